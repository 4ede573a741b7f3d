"""A training run killed at any moment resumes to what an uninterrupted run reaches; SIGTERM saves
first; one process writes a workdir at a time.

Kills are simulated in the test process: at the chosen point a BaseException that no trainer code
catches ends the run, and the killed Trainer is abandoned unclosed, as a dead process leaves it. A
real SIGKILL of a train.py subprocess would compile the train step again in every process
(minutes on CI's two cores); in-process the compile is shared with tests/test_trainer.py. What a
simulation cannot stop are Orbax's background writes: each kill lands after the saves it follows
are on disk, the moment the reported StepAlreadyExistsError needed (Orbax's atomic rename of a
finished save covers a kill during a write).
"""

import fcntl
import json
import re
import signal
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxvqa.train import checkpointing, run_log, trainer
from jaxvqa.data import pipeline


class _Killed(BaseException):
  """The simulated kill: not an Exception, so nothing on the way out handles it."""


def _leaves(tree):
  return [np.asarray(leaf) for leaf in jax.tree.leaves(jax.device_get(tree))]


def _steps(workdir, kind):
  directory = workdir / kind
  return (
      sorted(int(path.name) for path in directory.iterdir() if path.name.isdigit())
      if directory.exists()
      else []
  )


def _saved_state(workdir, kind, step):
  return ocp.StandardCheckpointer().restore(workdir / kind / str(step) / "state")


def _patch_loader(monkeypatch, step, action):
  """Runs `action` when the batch of `step` (1-based, as logged) is asked for."""
  clean_loader = pipeline.train_loader

  def loader(*args, start_step, **kwargs):
    for index, batch in enumerate(clean_loader(*args, start_step=start_step, **kwargs), start_step):
      if index + 1 == step:
        action()
      yield batch

  monkeypatch.setattr(pipeline, "train_loader", loader)


def _raise_killed():
  raise _Killed


def kill_during_step(monkeypatch, step):
  _patch_loader(monkeypatch, step, _raise_killed)


def sigterm_during_step(monkeypatch, step):
  _patch_loader(monkeypatch, step, lambda: signal.raise_signal(signal.SIGTERM))


def kill_after_best_save(monkeypatch, step):
  save = checkpointing.RunCheckpoints.save

  def save_then_die(self, state, meta, *, best=False):
    save(self, state, meta, best=best)
    if best and meta["step"] == step:
      self.wait()
      raise _Killed

  monkeypatch.setattr(checkpointing.RunCheckpoints, "save", save_then_die)


def kill_after_validation(monkeypatch, step):
  validate = trainer.Trainer._validate

  def validate_then_die(self, state, done, *args):
    best = validate(self, state, done, *args)
    if done == step:
      self.checkpoints.wait()
      raise _Killed
    return best

  monkeypatch.setattr(trainer.Trainer, "_validate", validate_then_die)


def _killed_run(config, workdir, monkeypatch, kill, step, expect=_Killed):
  with monkeypatch.context() as patch:
    kill(patch, step)
    run = trainer.Trainer(config, workdir, num_devices=1)
    with pytest.raises(expect) as stopped:
      run.train()
    run.checkpoints.wait()  # the saves made before the kill are on disk; the run is abandoned
  return stopped.value


def test_run_killed_at_several_points_ends_as_the_uninterrupted_run(
    tiny_config, tmp_path, monkeypatch, finished_run
):
  assert (
      tiny_config.train.checkpoint_every_steps == 2
  )  # periodic saves at 2 and 4, validation at 2 and 4
  workdir = tmp_path / "run"

  # Before the first checkpoint: nothing saved, the next start begins from scratch.
  _killed_run(tiny_config, workdir, monkeypatch, kill_during_step, 2)
  assert _steps(workdir, "checkpoints") == [] and _steps(workdir, "best") == []

  # Right after the best save at step 2, before the periodic save of that step: a best save newer
  # than every periodic one (every later start used to fail with StepAlreadyExistsError).
  _killed_run(tiny_config, workdir, monkeypatch, kill_after_best_save, 2)
  assert _steps(workdir, "best") == [2] and _steps(workdir, "checkpoints") == []

  # SIGTERM during step 3: the step finishes, is saved, and the run stops saying so.
  stop = _killed_run(
      tiny_config, workdir, monkeypatch, sigterm_during_step, 3, expect=run_log.TrainingInterrupted
  )
  assert stop.step == 3 and stop.signum == signal.SIGTERM
  assert "interrupted at step 3, saved; rerun the same command to resume" in str(stop)
  assert _steps(workdir, "checkpoints") == [3]
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler does not outlive train()

  # Between periodic saves: after the validation at step 4 (and its best save, if it improved),
  # before the periodic save at 4.
  _killed_run(tiny_config, workdir, monkeypatch, kill_after_validation, 4)
  assert _steps(workdir, "checkpoints") == [3]

  trainer.train_and_evaluate(tiny_config, workdir, num_devices=1)

  assert (workdir / "results.json").read_text() == (finished_run / "results.json").read_text()
  # No step logged twice by the resumes: the lines are those of the uninterrupted run, in order.
  # (Each process that trains logs its steps' first-call seconds once: left out here.)
  logged = [
      [
          (row["step"], sorted(row))
          for row in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
          if not any(key.startswith(trainer.FIRST_CALL_PREFIX) for key in row)
      ]
      for run in (workdir, finished_run)
  ]
  assert logged[0] == logged[1]
  for kind in ("checkpoints", "best"):
    assert _steps(workdir, kind)[-1] == _steps(finished_run, kind)[-1]
    step = _steps(workdir, kind)[-1]
    for resumed, uninterrupted in zip(
        _leaves(_saved_state(workdir, kind, step)),
        _leaves(_saved_state(finished_run, kind, step)),
        strict=True,
    ):
      np.testing.assert_array_equal(resumed, uninterrupted)
  best_meta = [
      json.loads((run / "best" / str(_steps(run, "best")[-1]) / "meta" / "metadata").read_text())
      for run in (workdir, finished_run)
  ]
  assert best_meta[0]["best_metric"] == best_meta[1]["best_metric"]
  assert best_meta[0]["calibration"] == best_meta[1]["calibration"]


def test_a_second_writer_of_a_workdir_is_refused_naming_it(tiny_config, tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  with open(workdir / checkpointing.LOCK_FILE, "w") as other_process:  # a live train.py's lock
    fcntl.flock(other_process, fcntl.LOCK_EX | fcntl.LOCK_NB)
    run = trainer.Trainer(tiny_config, workdir, num_devices=1)
    with pytest.raises(checkpointing.WorkdirLockedError, match=re.escape(str(workdir))):
      run.train()
  assert not (workdir / "config.json").exists() and _steps(workdir, "checkpoints") == []


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
  holder = subprocess.Popen(
      [
          sys.executable,
          "-c",
          "import sys, time\nfrom jaxvqa.train import checkpointing\n"
          "with checkpointing.lock_workdir(sys.argv[1]):\n  print('locked', flush=True)\n  time.sleep(300)",
          str(tmp_path),
      ],
      stdout=subprocess.PIPE,
      text=True,
  )
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(checkpointing.WorkdirLockedError, match=f"pid {holder.pid}"):
      with checkpointing.lock_workdir(tmp_path):
        pass
  finally:
    holder.kill()  # SIGKILL: no cleanup of its own
    holder.wait(timeout=60)
  with checkpointing.lock_workdir(tmp_path):  # taken at once: the OS dropped the dead one's lock
    pass

"""Weights that are not the ones saved, not finite or not readable are refused in one line, and a
score that is not a number fails its file (issue 30: items 4, 8 and 12)."""

import csv
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import run_cli

import jaxvqa
from jaxvqa.evaluate import checkpoint_report
from jaxvqa.serve import inference
from jaxvqa.train import checkpointing, run_log, trainer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
  import media

  return str(media.make_clip(tmp_path_factory.mktemp("trust") / "clip.mp4", frames=8))


def _copy(workdir, tmp_path):
  copy = tmp_path / "run"
  shutil.copytree(workdir, copy)
  return copy


def _rewrite_state(step_dir: Path, change) -> None:
  """Saves the state item of `step_dir` again with `change(tree)` applied, as a writer other than
  train.py would (Orbax's own layout, the save's meta untouched)."""
  import orbax.checkpoint as ocp

  checkpointer = ocp.StandardCheckpointer()
  tree = jax.tree.map(np.array, checkpointer.restore(step_dir / "state"))
  change(tree)
  checkpointer.save(step_dir / "state.new", tree)
  checkpointer.wait_until_finished()
  shutil.rmtree(step_dir / "state")
  (step_dir / "state.new").rename(step_dir / "state")


def _first_kernel(params) -> np.ndarray:
  return next(
      leaf for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0] if leaf.ndim == 2
  )


def _nudge_one_weight(field):
  def change(tree):
    _first_kernel(tree[field])[0, 0] += 0.5  # finite, and wrong: what flipped bytes can give

  return change


def _one_line(text):
  lines = [line for line in text.splitlines() if line.strip()]
  assert len(lines) == 1, text
  return lines[0]


def test_a_checkpoint_changed_after_saving_is_refused_by_every_reader(
    trained_workdir, tiny_config, clip, tmp_path
):
  workdir = _copy(trained_workdir, tmp_path)
  best, latest = workdir / "best" / "2", workdir / "checkpoints" / "2"
  assert checkpointing.DIGEST_KEY in json.loads((best / "meta" / "metadata").read_text())
  _rewrite_state(best, _nudge_one_weight("ema_params"))
  _rewrite_state(latest, _nudge_one_weight("params"))
  changed = f"checkpoint {best} has changed since it was saved"

  with pytest.raises(checkpointing.CheckpointError, match=changed):
    checkpointing.load_params(workdir)
  with pytest.raises(checkpointing.CheckpointError, match=changed):
    jaxvqa.load(workdir)
  with pytest.raises(checkpointing.CheckpointError, match=changed):  # eval.py: exit 2
    checkpoint_report.evaluate_checkpoint(workdir, out_dir=tmp_path / "eval")
  for argv in (
      ["score", "--workdir", str(workdir), clip],
      ["export", "--workdir", str(workdir), "--out", str(tmp_path / "exported")],
      ["doctor", "--workdir", str(workdir)],
  ):
    status, _, stderr = run_cli(argv)
    assert status == 2 and changed in _one_line(stderr), (argv, stderr)
  resumed = trainer.Trainer(tiny_config, workdir, num_devices=1)
  with pytest.raises(
      checkpointing.CheckpointError, match=f"checkpoint {latest} has changed since it was saved"
  ):
    resumed.train()
  resumed.checkpoints.close()


def test_nonfinite_weights_are_refused_at_load_with_one_line(trained_workdir, tmp_path):
  workdir = _copy(trained_workdir, tmp_path)
  best = workdir / "best" / "2"

  def poison(tree):
    _first_kernel(tree["ema_params"])[0, 0] = np.nan

  _rewrite_state(best, poison)
  # The digest made to match the poisoned weights: only the finite check can refuse them.
  meta_file = best / "meta" / "metadata"
  meta = json.loads(meta_file.read_text())
  params, _ = _load_unchecked(workdir)
  meta[checkpointing.DIGEST_KEY]["ema_params"] = checkpointing.weights_digest(params)
  meta_file.write_text(json.dumps(meta))
  with pytest.raises(checkpointing.CheckpointError) as caught:
    checkpointing.load_params(workdir)
  assert f"checkpoint {best} holds non-finite weights (1 NaN or infinite values" in str(
      caught.value
  )
  assert "\n" not in str(caught.value)


def _load_unchecked(workdir):
  checks = checkpointing.check_weights
  try:
    checkpointing.check_weights = lambda *args: None
    return checkpointing.load_params(workdir)
  finally:
    checkpointing.check_weights = checks


def test_shipped_model_directories_carry_their_digest_and_are_checked(tmp_path, caplog):
  from flax import serialization

  shipped = inference.SHIPPED_DIR
  card = json.loads((shipped / inference.SHIPPED_CARD).read_text())
  params = serialization.msgpack_restore((shipped / inference.SHIPPED_PARAMS).read_bytes())
  assert card[checkpointing.DIGEST_KEY] == checkpointing.weights_digest(params)

  def model_dir(name, card, params):
    directory = tmp_path / name
    directory.mkdir()
    (directory / inference.SHIPPED_CARD).write_text(json.dumps(card))
    (directory / inference.SHIPPED_PARAMS).write_bytes(serialization.msgpack_serialize(params))
    return directory

  nudged = jax.tree.map(np.array, params)
  _first_kernel(nudged)[0, 0] += 0.5
  changed = model_dir("changed", card, nudged)
  with pytest.raises(checkpointing.CheckpointError, match="has changed since it was saved"):
    jaxvqa.load(changed)
  status, _, stderr = run_cli(["doctor", "--workdir", str(changed)])
  assert status == 2 and str(changed) in _one_line(stderr)

  old_card = {key: value for key, value in card.items() if key != checkpointing.DIGEST_KEY}
  poisoned = jax.tree.map(np.array, params)
  _first_kernel(poisoned)[0, 0] = np.inf
  with pytest.raises(checkpointing.CheckpointError, match="holds non-finite weights"):
    jaxvqa.load(model_dir("poisoned", old_card, poisoned))

  # A model saved before digests existed: loads, with a warning that it cannot be checked.
  with caplog.at_level(logging.WARNING, logger="jaxvqa.train.checkpointing"):
    jaxvqa.load(model_dir("old", old_card, params))
  assert "records no weights digest" in caplog.text


def test_a_score_that_is_not_a_number_fails_its_file(trained_workdir, clip, tmp_path, monkeypatch):
  model = jaxvqa.load(trained_workdir)
  dispatch = inference.TrainedModel.dispatch
  monkeypatch.setattr(
      inference.TrainedModel,
      "dispatch",
      lambda self, clips, per_device_batch: dispatch(self, clips, per_device_batch) * np.nan,
  )
  assert model.score_many([clip]) == [None]
  assert "not a number" in model.last_errors[clip]
  output = tmp_path / "scores.csv"
  status, _, stderr = run_cli(
      [
          "score",
          "--workdir",
          str(trained_workdir),
          "--no-progress",
          "--format",
          "csv",
          "--output",
          str(output),
          clip,
      ]
  )
  assert status == 1, stderr
  assert f"{clip}: the model's score is not a number" in stderr
  with output.open(newline="", encoding="utf-8") as file:
    rows = list(csv.DictReader(file))
  assert [(row["path"], row["score"]) for row in rows] == [(clip, "")], rows
  assert "the model's score is not a number" in rows[0]["error"], rows


def _cut_data_files(step_dir: Path, how: str) -> None:
  # Orbax keeps a save's arrays in the per-process OCDBT store or, once merged, in state/d.
  data_files = [
      *(step_dir / "state").glob("ocdbt.process_*/d/*"),
      *(step_dir / "state").glob("d/*"),
  ]
  assert data_files
  for data_file in data_files:
    if how == "deleted":
      data_file.unlink()
    else:
      data_file.write_bytes(data_file.read_bytes()[: data_file.stat().st_size // 2])


@pytest.mark.parametrize("how", ["deleted", "truncated"])
def test_a_deleted_or_truncated_data_file_is_one_line_and_exit_2(
    trained_workdir, tiny_config, clip, tmp_path, how
):
  workdir = _copy(trained_workdir, tmp_path)
  for step_dir in (workdir / "best" / "2", workdir / "checkpoints" / "2"):
    _cut_data_files(step_dir, how)
  damaged = f"checkpoint {workdir / 'best' / '2'} is damaged: "
  commands = {
      "jaxvqa score": [
          sys.executable,
          "-m",
          "jaxvqa.cli",
          "score",
          "--workdir",
          str(workdir),
          clip,
      ],
      "jaxvqa doctor": [sys.executable, "-m", "jaxvqa.cli", "doctor", "--workdir", str(workdir)],
      "eval.py": [sys.executable, "eval.py", "--workdir", str(workdir)],
  }
  processes = {
      name: subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
      for name, command in commands.items()
  }
  for name, process in processes.items():
    stderr = process.communicate(timeout=300)[1]
    assert process.returncode == 2, (name, stderr[-3000:])
    assert _one_line(stderr).startswith(f"{name}: {damaged}"), (name, stderr[-3000:])
  resumed = trainer.Trainer(tiny_config, workdir, num_devices=1)
  with pytest.raises(checkpointing.CheckpointError) as caught:
    resumed.train()
  resumed.checkpoints.close()
  assert str(caught.value).startswith(f"checkpoint {workdir / 'checkpoints' / '2'} is damaged: ")
  assert "\n" not in str(caught.value)


def test_a_rerun_with_another_config_is_refused_naming_the_fields(
    trained_workdir, tiny_config, tmp_path
):
  workdir = _copy(trained_workdir, tmp_path)
  saved = (workdir / "config.json").read_text()

  def rerun(**changes):
    config = tiny_config.copy_and_resolve_references()
    for field, value in changes.items():
      section, name = field.split("__")
      config[section][name] = value
    run = trainer.Trainer(config, workdir, num_devices=1)
    try:
      return run.train(stop_after_step=2)
    finally:
      run.checkpoints.close()

  with pytest.raises(checkpointing.WorkdirConfigError) as caught:
    rerun(optim__learning_rate=5e-4)
  message = str(caught.value)
  assert message.startswith(
      f"{workdir} holds a run with another config (optim.learning_rate: 0.001 in the run, "
      "0.0005 now)"
  )
  assert "--config.train.resume_with_changed_config=True" in message
  assert "--workdir" in message and "\n" not in message

  with pytest.raises(
      checkpointing.WorkdirConfigError,
      match=r"holds a run of another model \(model.head_hidden: 8 in the run, 16 now\)",
  ):
    rerun(model__head_hidden=16)
  assert (workdir / "config.json").read_text() == saved  # nothing was rewritten

  rerun()  # the same config resumes
  rerun(optim__learning_rate=5e-4, train__resume_with_changed_config=True)
  assert json.loads((workdir / "config.json").read_text())["optim"]["learning_rate"] == 5e-4


def test_a_run_resumes_on_another_attention_path(tmp_path):
  # A run begun when "xla" was the default resumes under today's "auto": how the window attention
  # runs is not what the run trains. Another model field is still refused.
  from configs import demo as demo_config

  config = demo_config.get_config("scratch")
  config.model.backbone.attention_impl = "xla"
  checkpointing.save_config(tmp_path, config)
  config.model.backbone.attention_impl = "auto"
  checkpointing.check_resumed_config(tmp_path, config)
  config.model.backbone.embed_dim *= 2
  with pytest.raises(checkpointing.WorkdirConfigError, match=r"model\.backbone\.embed_dim"):
    checkpointing.check_resumed_config(tmp_path, config)


def test_metrics_of_steps_after_the_resumed_save_are_not_kept_twice(tmp_path):
  metrics = tmp_path / run_log.METRICS_FILE
  lines = [json.dumps({"step": step, "loss": 1.0 / step}) + "\n" for step in range(1, 7)]
  metrics.write_text("".join(lines) + '{"step": 7, "lo')  # killed while writing step 7
  with run_log.RunLog(tmp_path, enabled=True, total_steps=8, initial_step=4, show_progress=False):
    pass
  assert metrics.read_text() == "".join(lines[:4])


def test_saves_killed_while_being_written_are_removed_by_the_run_that_resumes(
    trained_workdir, tiny_config, tmp_path, caplog
):
  import fcntl

  workdir = _copy(trained_workdir, tmp_path)
  unfinished = [
      workdir / "checkpoints" / "4.orbax-checkpoint-tmp-1765000000123456",
      workdir / "best" / "4.orbax-checkpoint-tmp-1765000000654321",
  ]
  for path in unfinished:
    (path / "state").mkdir(parents=True)
    (path / "state" / "_METADATA").write_text("{")  # cut short by the kill

  def resume():
    run = trainer.Trainer(tiny_config, workdir, num_devices=1)
    try:
      run.train(stop_after_step=2)  # restores the save at step 2; no step to train
    finally:
      run.checkpoints.close()

  # Another process holding the workdir may be writing them: they are left alone.
  with open(workdir / checkpointing.LOCK_FILE, "w") as other_writer:
    fcntl.flock(other_writer, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with pytest.raises(checkpointing.WorkdirLockedError):
      resume()
  assert all(path.is_dir() for path in unfinished)

  with caplog.at_level(logging.INFO, logger="jaxvqa.train.trainer"):
    resume()
  assert not any(path.exists() for path in unfinished)
  for kind in ("checkpoints", "best"):
    assert sorted(p.name for p in (workdir / kind).iterdir() if "tmp" in p.name) == []
    assert sorted(p.name for p in (workdir / kind).iterdir() if p.name.isdigit()) == ["2"]
  for path in unfinished:
    assert f"removed {path}, a save killed before it was finished" in caplog.text

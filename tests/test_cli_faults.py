"""Faults that end a command in one line: a full disk, Ctrl-C, a file where a directory belongs,
bytes paths (issue 30 items 9 and 10). The CLI's other bad inputs run in the reliability battery
(tests/reliability_battery.py, held by tests/test_reliability_battery.py)."""

import errno
import os
import signal
import subprocess
import sys
import time

import media
import pytest
from conftest import run_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
  root = tmp_path_factory.mktemp("clips")
  return [str(media.make_clip(root / f"clip{number}.mp4", frames=8)) for number in range(2)]


class _FullDisk:
  """FILE.partial's file object once the disk is full: every write fails, as on a real full disk."""

  def __init__(self, file):
    self._file = file

  def __getattr__(self, name):
    return getattr(self._file, name)

  def write(self, data):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_appending_the_partial_file_is_one_line_and_exit_2(
    clips, tmp_path, monkeypatch
):
  from jaxvqa.scoring import output_file

  opened = output_file.OutputFile.open

  def open_on_a_full_disk(self):
    rows = opened(self)
    self._file = _FullDisk(self._file)
    return rows

  monkeypatch.setattr(output_file.OutputFile, "open", open_on_a_full_disk)
  out = tmp_path / "scores.csv"
  status, stdout, stderr = run_cli(["score", "--no-progress", "--output", str(out), *clips])
  assert status == 2
  assert stdout == ""
  assert f"cannot write {out}.partial: no space left on device" in stderr
  assert "Traceback" not in stderr
  assert not out.exists()


def test_bytes_paths_are_read_as_the_os_gives_names(clips):
  import jaxvqa

  model = jaxvqa.load()
  assert model.score(os.fsencode(clips[0])) == model.score(clips[0])
  assert model.score_many([os.fsencode(path) for path in clips]) == model.score_many(clips)
  with pytest.raises(TypeError, match="single path"):
    model.score_many(os.fsencode(clips[0]))


def test_make_dataset_out_naming_a_file_is_one_line_and_exit_2(clips, tmp_path):
  not_a_directory = tmp_path / "made"
  not_a_directory.write_text("a file\n")
  status, _, stderr = run_cli(
      ["make-dataset", "--sources", os.path.dirname(clips[0]), "--out", str(not_a_directory)]
  )
  assert status == 2
  assert stderr.splitlines() == [
      f"jaxvqa make-dataset: --out {not_a_directory} is a file, not a directory: name a new or "
      "existing directory"
  ]


def test_ctrl_c_during_train_py_outside_the_steps_is_one_line_and_exit_130(monkeypatch, capsys):
  sys.path.insert(0, REPO)
  import train

  from jaxvqa.train import trainer

  def interrupted_evaluation(*args, **kwargs):
    raise KeyboardInterrupt

  monkeypatch.setattr(trainer, "train_and_evaluate", interrupted_evaluation)
  train.parse_flags(["train.py", "--config", os.path.join(REPO, "configs", "demo.py")])
  with pytest.raises(SystemExit) as stopped:
    train.main(["train.py"])
  assert stopped.value.code == 130
  assert capsys.readouterr().err.splitlines() == [
      "train.py: interrupted (Ctrl-C); the checkpoints saved so far are kept: rerun the same "
      "command to resume"
  ]


def _make_dataset(sources, out):
  return [
      sys.executable,
      "-m",
      "jaxvqa.cli",
      "make-dataset",
      "--sources",
      str(sources),
      "--out",
      str(out),
      "--jobs",
      "1",
      "--no-progress",
      "--ladder",
      "50,100,200,400",
  ]


def test_ctrl_c_stops_make_dataset_at_once_leaving_no_partial_files(tmp_path):
  sources, out = tmp_path / "sources", tmp_path / "out"
  # 64 encodes, about 20 s of work: on a busy CI machine (the suite's other process compiling) a
  # job of 24 once finished before this process got round to interrupting it.
  num_sources, rungs = 16, 4
  for number in range(num_sources):
    media.make_clip(sources / f"source{number}.mp4", size=(160, 120), frames=48)
  # A shell starts a background job (`cmd &`, as a CI runner may) with SIGINT ignored, and Python
  # then never turns Ctrl-C into KeyboardInterrupt; the job is started as a terminal starts it.
  as_from_a_terminal = [
      sys.executable,
      "-c",
      "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
      "sys.argv[0] = 'jaxvqa'; runpy.run_module('jaxvqa.cli', run_name='__main__')",
      *_make_dataset(sources, out)[3:],
  ]
  job = subprocess.Popen(as_from_a_terminal, cwd=REPO, stderr=subprocess.PIPE, text=True)
  # Interrupted once the first encode is written: work is running and most of it is queued.
  deadline = time.monotonic() + 60
  while not list(out.glob("encodes/*/*.json")) and time.monotonic() < deadline:
    time.sleep(0.05)
  assert job.poll() is None, "make-dataset ended before it could be interrupted"
  job.send_signal(signal.SIGINT)
  interrupted = time.monotonic()
  _, stderr = job.communicate(timeout=60)
  assert job.returncode == 130, stderr
  assert time.monotonic() - interrupted < 5  # queued encodes were cancelled, not run
  assert stderr.splitlines() == [
      "jaxvqa make-dataset: interrupted: queued encodes cancelled, finished ones kept; rerun "
      "the same command to make the rest"
  ]
  made = sorted(path.name for path in out.rglob("*"))
  assert not [name for name in made if ".partial" in name or name.endswith(".tmp")], made
  assert not (out / "manifest.jsonl").exists()
  assert len(list(out.glob("encodes/*/*.json"))) < num_sources * rungs
  rerun = subprocess.run(
      _make_dataset(sources, out), cwd=REPO, capture_output=True, text=True, timeout=120
  )
  assert rerun.returncode == 0, rerun.stderr
  assert len((out / "manifest.jsonl").read_text().splitlines()) == num_sources * rungs


def test_resume_knows_files_spelt_another_way_and_refuses_another_batch_size(
    clips, tmp_path, monkeypatch
):
  from jaxvqa.scoring import output_file

  def stopped_before_the_end(self, text):
    raise KeyboardInterrupt

  out = tmp_path / "scores.jsonl"
  relative = [os.path.basename(path) for path in clips]
  monkeypatch.chdir(os.path.dirname(clips[0]))
  with monkeypatch.context() as stopped:
    stopped.setattr(output_file.OutputFile, "finish", stopped_before_the_end)
    status, _, _ = run_cli(
        ["score", "--no-progress", "--format", "jsonl", "--output", str(out), *relative]
    )
  assert status == 130
  assert len(open(f"{out}.partial").read().splitlines()) == 2
  # Another batch size would change the scores by ~1e-6: refused, rows kept.
  arguments = ["score", "--no-progress", "--format", "jsonl", "--output", str(out), "--resume"]
  status, _, stderr = run_cli([*arguments, "--batch-size", "3", *clips])
  assert status == 2
  assert "was scored 8 clips per device per model call; this run asks for 3" in stderr
  # The same files by their absolute names: nothing is scored again, each file written once.
  status, _, stderr = run_cli([*arguments, *clips, f"./{relative[0]}"])
  assert status == 0, stderr
  assert "2 of 2 files already scored" in stderr
  assert "0 files to score" in stderr
  assert len(out.read_text().splitlines()) == 2


def test_names_with_escape_sequences_and_newlines_reach_the_terminal_escaped(clips, tmp_path):
  # An OSC that would retitle the terminal and a newline that would forge a line of our own.
  not_a_video = tmp_path / "evil\x1b]0;pwned\x07\njaxvqa score: wrote 0 scores.mp4"
  not_a_video.write_bytes(b"not a video")
  red = tmp_path / "red\x1b[31m\rclip.mp4"
  red.write_bytes(open(clips[0], "rb").read())
  scored = subprocess.run(
      [sys.executable, "-m", "jaxvqa.cli", "score", "--no-progress", str(not_a_video), str(red)],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=120,
  )
  assert scored.returncode == 1, scored.stderr
  for control in ("\x1b", "\x07", "\r"):
    assert control not in scored.stderr + scored.stdout
  lines = scored.stderr.splitlines()
  assert all(line.startswith(("jaxvqa score: ", "[")) for line in lines), lines
  assert not [line for line in lines if line.startswith("jaxvqa score: wrote")]
  assert f"{tmp_path}/evil\\x1b]0;pwned\\x07\\njaxvqa score: wrote 0 scores.mp4: not a video" in (
      scored.stderr
  )
  assert "red\\x1b[31m\\rclip.mp4" in scored.stdout

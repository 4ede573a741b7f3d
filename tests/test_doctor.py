"""`jaxvqa doctor`: passes a model that separates bitrates, fails a collapsed one with exit 1."""

import os
import shutil
import types

import numpy as np
import pytest

import jaxvqa
from jaxvqa.serve import api, doctor, inference
from jaxvqa.train import checkpointing
from conftest import run_cli


@pytest.fixture(scope="module")
def model(trained_workdir):
  return jaxvqa.load(trained_workdir)


class BitsModel(api.QualityModel):
  """The trained model's identity and calibration, with a score we control: the encode's size in
  kB, so a high bitrate scores far above a low one (a healthy model, by construction)."""

  def score_many(self, paths, **kwargs):
    self.last_errors = {}
    return [os.path.getsize(path) / 1000 for path in paths]


@pytest.fixture(scope="module")
def pairs(model, tmp_path_factory):
  """The doctor's clips for the tiny model (two contents, to keep the test short)."""
  return doctor.make_bitrate_pairs(
      tmp_path_factory.mktemp("doctor-clips"),
      frame_size=model.input_shape[1],
      contents=("bikes", "coffee"),
  )


@pytest.fixture(scope="module")
def collapsed_workdir(trained_workdir, tmp_path_factory):
  """The tiny trained run with its quality head's output weights zeroed: every clip gets the head's
  bias as its score, whatever its pixels (what DOVER#38 and UVQ#6 report)."""
  workdir = tmp_path_factory.mktemp("collapsed") / "run"
  workdir.mkdir()
  shutil.copy(trained_workdir / checkpointing.CONFIG_FILE, workdir / checkpointing.CONFIG_FILE)
  params, meta = checkpointing.load_params(trained_workdir)
  params = jax_tree_to_numpy(params)
  params["head"]["out"]["kernel"] = np.zeros_like(params["head"]["out"]["kernel"])
  state = types.SimpleNamespace(
      step=np.int32(meta["step"]),
      params=params,
      ema_params=params,
      opt_state={},
      nonfinite_streak=np.int32(0),
  )
  checkpoints = checkpointing.RunCheckpoints(workdir, keep=1)
  checkpoints.save(state, meta, best=True)
  checkpoints.close()
  return workdir


def jax_tree_to_numpy(tree):
  return {
      key: jax_tree_to_numpy(value) if isinstance(value, dict) else np.asarray(value)
      for key, value in tree.items()
  }


def test_the_installation_report_names_versions_devices_ffmpeg_and_decord():
  checks = {check.name: check for check in doctor.installation_checks()}
  assert list(checks) == ["versions", "devices", "ffmpeg", "decord"]
  assert all(check.ok for check in checks.values())
  assert f"jaxvqa {jaxvqa.__version__}" in checks["versions"].detail
  assert "8 × cpu" in checks["devices"].detail  # tests force 8 CPU devices (conftest.py)
  assert "libx264 yes, libvmaf yes" in checks["ffmpeg"].detail


def test_the_clips_are_a_low_and_a_high_bitrate_of_each_content(pairs):
  assert [pair.content for pair in pairs] == ["bikes", "coffee"]
  for pair in pairs:
    assert pair.low.bits_per_pixel < 0.03 < 0.15 < pair.high.bits_per_pixel
    # What the model is asked to see, by VMAF: blocky against transparent.
    assert pair.low.vmaf < 70 and pair.high.vmaf > 95


def test_a_model_that_separates_bitrates_passes(model, pairs):
  checks = doctor.check_model(BitsModel(model.trained), pairs=pairs)
  assert [check.name for check in checks] == ["model", "bikes", "coffee", "separation"]
  assert all(check.ok for check in checks), [check.line() for check in checks]
  assert "above margin" in checks[1].detail


def test_the_verdict_needs_every_content_above_the_margin(pairs):
  low, high = pairs[0].low.path, pairs[0].high.path
  other_low, other_high = pairs[1].low.path, pairs[1].high.path
  scores = {low: 40.0, high: 46.0, other_low: 40.0, other_high: 44.0}
  checks = doctor.separation_checks(pairs, scores, {}, margin=5.0)
  assert [check.ok for check in checks] == [True, False, False]
  assert "difference +4, NOT above margin 5" in checks[1].detail
  assert "on 1 of 2 contents (coffee)" in checks[2].detail
  assert "collapsed" not in checks[2].detail

  scores = {low: 96.0215, high: 96.0215, other_low: 96.0215, other_high: None}
  checks = doctor.separation_checks(
      pairs, scores, {other_high: "cannot decode"}, margin=0.0, calibration_range=(96.0215, 99.76)
  )
  assert [check.ok for check in checks] == [False, False, False]
  assert "could not be scored: cannot decode" in checks[1].detail
  assert "every clip scored 96.0215, the model has collapsed" in checks[2].detail
  assert "a bound of the calibration's range" in checks[2].detail


def test_doctor_command_is_healthy_with_a_separating_model(model, monkeypatch):
  monkeypatch.setattr(api, "load", lambda workdir=None, **kwargs: BitsModel(model.trained))
  status, stdout, _ = run_cli(["doctor"])
  assert status == 0, stdout
  assert stdout.strip().splitlines()[-1] == "jaxvqa doctor: healthy"
  assert "ok    separation: high bitrate scores above low" in stdout


def test_doctor_command_fails_a_collapsed_model(collapsed_workdir):
  status, stdout, _ = run_cli(["doctor", "--workdir", str(collapsed_workdir)])
  assert status == 1, stdout
  lines = stdout.strip().splitlines()
  assert lines[-1] == "jaxvqa doctor: FAILED (bikes, astronaut, coffee, separation)"
  assert "the model has collapsed (one score for every input)" in lines[-2]
  collapsed = jaxvqa.load(collapsed_workdir)
  assert collapsed.identity in stdout


def test_doctor_command_refuses_bad_invocations(tmp_path):
  status, _, stderr = run_cli(["doctor", "--margin", "-1"])
  assert status == 2 and "--margin must be a number ≥ 0, got -1.0" in stderr
  status, _, stderr = run_cli(["doctor", "--workdir", str(tmp_path / "no-run")])
  assert status == 2 and "is not a directory" in stderr
  status, _, stderr = run_cli(["doctor", "--workdir", str(tmp_path)])
  assert status == 2 and "config.json not found" in stderr


def test_the_shipped_model_passes_the_doctor():
  # Issue 16's bar, in CI: the model the wheel carries separates a low from a high bitrate of every
  # built-in content by more than the margin (5 VMAF points), measured here, not assumed.
  status, stdout, _ = run_cli(["doctor"])
  assert status == 0, stdout
  assert stdout.strip().splitlines()[-1] == "jaxvqa doctor: healthy"
  card, _ = inference.read_model_directory()
  assert f"shipped {card['id']}" in stdout
  for content in doctor.CONTENTS:
    line = next(line for line in stdout.splitlines() if line.startswith(f"ok    {content}:"))
    difference = float(line.split("difference ")[1].split(",")[0])
    margin = float(line.split("margin ")[1])
    assert margin > 4.9 and difference > margin, line

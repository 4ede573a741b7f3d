"""`jaxvqa export`: the exported StableHLO scorer scores real clips as the Python model does, and
loads and runs with jax and numpy alone."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import media

import jaxvqa
from jaxvqa import metrics
from jaxvqa.evaluate import calibration
from jaxvqa.serve import api, export, exported
from conftest import run_cli


# Fixtures (declarative): the same model as test_api.py's.
@pytest.fixture(scope="module")
def model(trained_workdir):
  return jaxvqa.load(trained_workdir)


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
  """Three real clips: two contents of one source at 64×48, and another source at 80×64."""
  root = tmp_path_factory.mktemp("export-clips")
  return [
      media.make_clip(root / "a.mp4", frames=12),
      media.make_clip(root / "b.mkv", frames=9, start_frame=60),
      media.make_clip(root / "c.mp4", source="carphone_pristine", size=(80, 64), frames=10),
  ]


@pytest.fixture(scope="module")
def clips(model, clip_files):
  """The clips as the model takes them: uint8 [3, T, S, S, 3], as `model.score(path)` makes them."""
  return np.stack([model.load_clip(path) for path in clip_files])


@pytest.fixture(scope="module")
def exported_dir(trained_workdir, tmp_path_factory):
  """`jaxvqa export --workdir W --out DIR`: the defaults (cpu and cuda, any batch)."""
  out = tmp_path_factory.mktemp("export") / "scorer"
  status, stdout, stderr = run_cli(["export", "--workdir", str(trained_workdir), "--out", str(out)])
  assert status == 0, stderr
  assert "scorer.jaxexport" in stdout and "platforms cpu, cuda" in stdout
  return out


def test_the_exported_program_scores_real_clips_as_the_python_model(
    model, clip_files, clips, exported_dir
):
  scorer = exported.load(exported_dir)
  assert scorer.exported.platforms == ("cpu", "cuda")
  assert scorer.batch is None and scorer.input_shape == model.input_shape

  scores, raw = scorer(clips)
  expected_raw = model.trained.raw_scores(clips)
  np.testing.assert_allclose(raw, expected_raw, rtol=0, atol=1e-5)
  np.testing.assert_allclose(scores, model.trained.calibrate(expected_raw), rtol=0, atol=1e-5)
  assert np.ptp(raw) > 1e-3  # the clips score differently, so the equality tells them apart
  # File → score: the model's whole path against load_clip + the program.
  assert scores[2] == pytest.approx(model.score(clip_files[2]), abs=1e-5)
  # Any batch size (the batch dimension is symbolic), uint8 or float pixels, one clip unbatched.
  np.testing.assert_allclose(scorer(clips[:1].astype(np.float32))[1], raw[:1], rtol=0, atol=1e-5)
  assert scorer.score(clips[1]) == pytest.approx(scores[1:2], abs=1e-5)

  metadata = json.loads((exported_dir / exported.METADATA_FILE).read_text())
  assert metadata["input"]["shape"] == ["b", *model.input_shape]
  assert metadata["model"]["identity"] == model.identity
  assert metadata["calibration"] == model.trained.calibration.to_dict()
  assert metadata["frames"]["num_frames"] == model.input_shape[0]
  assert metadata["frames"]["size"] == model.input_shape[1]
  assert metadata["jaxvqa_version"] == jaxvqa.__version__
  assert metadata["jax_version"] == jax.__version__

  with pytest.raises(ValueError, match=r"\[B, 2, 32, 32, 3\]"):
    scorer(clips[:, :1])


def test_the_shipped_model_exports_with_no_workdir_and_scores_as_in_python(clip_files, tmp_path):
  shipped = jaxvqa.load()
  status, stdout, stderr = run_cli(["export", "--out", str(tmp_path / "shipped")])
  assert status == 0, stderr
  assert shipped.identity in stdout
  scorer = exported.load(tmp_path / "shipped")
  clips = np.stack([shipped.load_clip(path) for path in clip_files])
  scores, raw = scorer(clips)
  expected_raw = shipped.trained.raw_scores(clips)
  np.testing.assert_allclose(raw, expected_raw, rtol=0, atol=1e-5)
  # The calibration rises up to 143 VMAF points per raw unit, which magnifies the raw 1e-6 float32
  # rounding of the program's calibration to about 2e-5.
  np.testing.assert_allclose(scores, shipped.trained.calibrate(expected_raw), rtol=0, atol=1e-4)
  assert np.ptp(raw) > 1e-3


def test_calibration_inside_the_program_and_a_fixed_batch(model, clips, tmp_path):
  """A logistic calibration that clips none of these scores, so the calibrated values are compared
  where they vary; exported for cpu only with a batch of 2, so 3 clips take a padded second call."""
  raw = model.trained.raw_scores(clips)
  trained = copy.copy(model.trained)
  trained.__dict__.pop("identity", None)  # cached: the calibration is part of it
  trained.calibration = calibration.Calibration(
      metrics.LogisticFit(metrics.FIT_LOGISTIC, (100.0, 0.0, float(raw.mean()), 2.0)), 0.0, 100.0
  )
  calibrated = api.QualityModel(trained)
  expected = trained.calibrate(raw)
  assert np.all((expected > 1) & (expected < 99)) and np.ptp(expected) > 1e-2

  result = export.export_scorer(calibrated, tmp_path, platforms=("cpu",), batch=2)
  assert result.program_bytes == (tmp_path / exported.PROGRAM_FILE).stat().st_size
  scorer = exported.load(tmp_path)
  assert scorer.exported.platforms == ("cpu",) and scorer.batch == 2
  assert scorer.metadata["input"]["shape"] == [2, *model.input_shape]
  assert scorer.metadata["model"]["identity"] == calibrated.identity != model.identity
  scores, raw_exported = scorer(clips)
  np.testing.assert_allclose(raw_exported, raw, rtol=0, atol=1e-5)
  np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-5)


def test_the_written_loader_runs_with_jax_and_numpy_alone(model, clips, exported_dir, tmp_path):
  """DIR/score_exported.py, run where importing flax, optax, orbax or jaxvqa fails."""
  loader = exported_dir / exported.LOADER_FILE
  assert loader.read_text() == Path(exported.__file__).read_text()
  np.save(tmp_path / "clips.npy", clips)
  code = (
      "import importlib.abc, importlib.util, sys\n"
      "class Refuse(importlib.abc.MetaPathFinder):\n"
      "  def find_spec(self, name, path=None, target=None):\n"
      "    if name.split('.')[0] in ('flax', 'optax', 'orbax', 'jaxvqa'):\n"
      "      raise ImportError(f'{name} is not allowed here')\n"
      "sys.meta_path.insert(0, Refuse())\n"
      f"spec = importlib.util.spec_from_file_location('score_exported', {str(loader)!r})\n"
      "loader = importlib.util.module_from_spec(spec)\n"
      "spec.loader.exec_module(loader)\n"
      f"status = loader.main([{str(exported_dir)!r}, 'clips.npy'])\n"
      "print('status', status)\n"
      "print('loaded', sorted({name.split('.')[0] for name in sys.modules}"
      " & {'flax', 'optax', 'orbax', 'jaxvqa', 'jax', 'numpy'}))\n"
  )
  result = subprocess.run(
      [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=False
  )
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  assert lines[-2:] == ["status 0", "loaded ['jax', 'numpy']"]
  printed = [float(line.split()[1]) for line in lines[:-2]]
  expected = model.trained.calibrate(model.trained.raw_scores(clips))
  np.testing.assert_allclose(printed, expected, rtol=0, atol=1e-5)


def test_only_a_cuda_program_holds_the_fused_attention_kernel(model, monkeypatch):
  # The model scores on "auto" (the fused kernel on a GPU), and one of its SwinV2 stages has
  # windows the kernel takes. An export for CPU, or for CPU and CUDA, must hold the XLA path
  # alone, even with JAXVQA_ATTENTION forcing the kernel, and so must one for CUDA with a symbolic
  # batch (a Triton grid is static); one for CUDA alone with a fixed batch holds the kernel
  # (lowered here for CUDA without a GPU). The CPU programs' scores are checked above.
  assert model.trained.model.backbone.attention_impl == "auto"
  monkeypatch.setenv("JAXVQA_ATTENTION", "pallas")
  for platforms, batch in ((("cpu",), 1), (("cpu", "cuda"), 1), (("cuda",), None)):
    program = export.export_program(model, platforms=platforms, batch=batch)
    text = program.mlir_module()
    assert "triton" not in text and "stablehlo.while" not in text, platforms
    assert export.scorer_metadata(model, program, batch=batch)["attention_impl"] == "xla"
  monkeypatch.delenv("JAXVQA_ATTENTION")
  program = export.export_program(model, platforms=("cuda",), batch=1)
  assert program.mlir_module().count("__gpu$xla.gpu.triton") >= 1
  assert export.scorer_metadata(model, program, batch=1)["attention_impl"] == "auto"


def test_export_refuses_bad_invocations(trained_workdir, tmp_path):
  for argv, message in [
      (["--platforms", "cpu,gpu"], "--platforms: platforms 'cpu,gpu': expected"),
      (["--platforms", "cpu,cpu"], "names one platform twice"),
      (["--batch", "0"], "--batch must be ≥ 1, got 0"),
  ]:
    status, _, stderr = run_cli(
        ["export", "--workdir", str(trained_workdir), "--out", str(tmp_path / "out"), *argv]
    )
    assert (status, message in stderr) == (2, True), stderr
  status, _, stderr = run_cli(
      ["export", "--workdir", str(tmp_path / "no-run"), "--out", str(tmp_path / "out")]
  )
  assert status == 2 and str(tmp_path / "no-run") in stderr
  assert not (tmp_path / "out").exists()


def test_a_directory_without_a_scorer_is_named(tmp_path):
  with pytest.raises(exported.ExportedScorerError, match="scorer.json not found"):
    exported.load(tmp_path)
  (tmp_path / exported.METADATA_FILE).write_text(json.dumps({"format": "other"}))
  (tmp_path / exported.PROGRAM_FILE).write_bytes(b"not a program")
  with pytest.raises(exported.ExportedScorerError, match="export again"):
    exported.load(tmp_path)

"""The Python API (jaxvqa.load, QualityModel, quality_fn), its README block and its example."""

import contextlib
import importlib.util
import io
import json
import math
import re
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

import media

import jaxvqa
from jaxvqa import cli, metrics
from jaxvqa.evaluate import calibration
from jaxvqa.models import vqa
from jaxvqa.serve import api, inference
from jaxvqa.train import checkpointing
from jaxvqa.data import decode, ffmpeg_reader, manifest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(trained_workdir):
  return jaxvqa.load(trained_workdir)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
  """Two real 64×48 clips of one size (different content and length) and bad files."""
  root = tmp_path_factory.mktemp("api-clips")
  return {
      "a": str(media.make_clip(root / "a.mp4", frames=12)),
      "b": str(media.make_clip(root / "b.mkv", frames=9, start_frame=60)),
      "not_a_video": str(media.make_not_a_video(root / "notes.mp4")),
      "empty": str(media.make_empty_file(root / "empty.mov")),
      "missing": str(root / "missing.mp4"),
  }


@pytest.fixture(scope="module")
def raw_model(trained_workdir):
  """The latest checkpoint, which has no calibration: scores are the network's raw output, which
  the best checkpoint's calibration clips to its labels' range for these clips."""
  return jaxvqa.load(trained_workdir, which="latest")


@pytest.fixture(scope="module")
def cli_scores(trained_workdir, clips):
  """`jaxvqa score --format json` of the good clips: the command line's {path: (score, raw)}."""
  output = io.StringIO()
  with contextlib.redirect_stdout(output):
    status = cli.main(
        [
            "score",
            "--workdir",
            str(trained_workdir),
            "--format",
            "json",
            "--no-progress",
            clips["a"],
            clips["b"],
        ]
    )
  assert status == 0
  return {
      row["path"]: (row["score"], row["raw_score"])
      for row in json.loads(output.getvalue())["videos"]
  }


def all_frames(path):
  """Every frame of a file, decoded."""
  return decode.read_frames(path, np.arange(decode.probe(path).num_frames))


# ----------------------------------------------------------------------------- loading


def test_import_stays_cheap_and_the_api_names_load_on_first_use():
  code = (
      "import sys, jaxvqa\n"
      "from jaxvqa import cli\n"
      "try:\n  cli.main(['--help'])\nexcept SystemExit:\n  pass\n"
      "before = 'jax' in sys.modules\n"
      "load = jaxvqa.load\n"
      "from jaxvqa.serve import api\n"
      "print(before, 'jax' in sys.modules, load is api.load,\n"
      "      jaxvqa.quality_fn is api.quality_fn, jaxvqa.QualityModel is api.QualityModel,\n"
      "      {'load', 'quality_fn', 'QualityModel'} <= set(dir(jaxvqa)))\n"
      "try:\n  jaxvqa.no_such_name\nexcept AttributeError as error:\n  print(error)\n"
  )
  result = subprocess.run(
      [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
  )
  lines = result.stdout.strip().splitlines()
  assert lines[-2] == "False True True True True True"
  assert lines[-1] == "module 'jaxvqa' has no attribute 'no_such_name'"


def test_load_without_a_workdir_is_the_shipped_model():
  shipped = jaxvqa.load()
  card = json.loads((inference.SHIPPED_DIR / inference.SHIPPED_CARD).read_text())
  assert f"shipped {card['id']}" in repr(shipped)
  assert "EfficientNet-Lite0; fusion out_dim=128; temporal width=128" in repr(shipped)
  assert "4 frames of 128px (one native crop, aligned to 16px)" in repr(shipped)
  assert shipped.input_shape == (
      card["config"]["data"]["num_frames"],
      card["config"]["data"]["frame_size"],
      card["config"]["data"]["frame_size"],
      3,
  )
  assert shipped.scale.startswith("VMAF (0-100)")


def test_a_recorded_attention_path_is_not_how_scoring_runs(trained_workdir, tmp_path, monkeypatch):
  # How the window attention runs is the machine's choice: a SwinV2 run whose config.json
  # recorded "xla" is scored on "auto" (the fused kernel on a GPU) unless JAXVQA_ATTENTION forces
  # a path, and the model's identity, a fingerprint of what was recorded, stays.
  directory = Path(shutil.copytree(trained_workdir, tmp_path / "run"))
  config_path = directory / checkpointing.CONFIG_FILE
  config = json.loads(config_path.read_text())
  config["model"]["backbone"]["attention_impl"] = "xla"
  config_path.write_text(json.dumps(config))
  monkeypatch.delenv(vqa.ATTENTION_ENV, raising=False)
  recorded = jaxvqa.load(directory, num_devices=1)
  assert recorded.trained.config.model.backbone.attention_impl == "xla"
  assert recorded.trained.model.backbone.attention_impl == "auto"
  monkeypatch.setenv(vqa.ATTENTION_ENV, "pallas")
  forced = jaxvqa.load(directory, num_devices=1)
  assert forced.trained.model.backbone.attention_impl == "pallas"
  assert forced.identity == recorded.identity
  monkeypatch.setenv(vqa.ATTENTION_ENV, "triton")
  with pytest.raises(ValueError, match=r"JAXVQA_ATTENTION='triton'"):
    jaxvqa.load(directory, num_devices=1)


def test_the_packaging_puts_both_shipped_files_in_the_wheel():
  # `pip wheel .` lists jaxvqa/shipped/model.json and params.msgpack only through this entry
  # (checked by hand: docs/MODEL.md); a renamed file would leave the wheel without a model.
  tomllib = pytest.importorskip("tomllib")  # Python 3.11+
  package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
      "package-data"
  ]["jaxvqa"]
  shipped = inference.SHIPPED_DIR.relative_to(ROOT / "jaxvqa")
  expected = {str(shipped / inference.SHIPPED_CARD), str(shipped / inference.SHIPPED_PARAMS)}
  assert expected <= set(package_data)
  assert all((ROOT / "jaxvqa" / name).is_file() for name in expected)


def test_an_installation_without_its_model_says_so_in_one_line(tmp_path, monkeypatch):
  monkeypatch.setattr(inference, "SHIPPED_DIR", tmp_path / "shipped")
  with pytest.raises(FileNotFoundError) as caught:
    jaxvqa.load()
  message = str(caught.value)
  assert "\n" not in message
  assert f"this jaxvqa {jaxvqa.__version__} installation has no shipped model" in message
  assert str(tmp_path / "shipped") in message and "workdir" in message
  assert isinstance(caught.value, checkpointing.CheckpointNotFoundError)
  # Raised by load itself: no chained exception, no frame of library code below it.
  assert caught.value.__cause__ is None and caught.value.__context__ is None
  library_frames = [
      frame.name
      for frame in traceback.extract_tb(caught.tb)
      if ROOT / "jaxvqa" in Path(frame.filename).resolve().parents
  ]
  assert library_frames == ["load", "load_model", "load_shipped_model", "read_model_directory"]

  with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "no-run"))):
    jaxvqa.load(tmp_path / "no-run")


# ----------------------------------------------------------------------------- files and frames


def test_score_is_the_command_line_score_and_score_frames_of_the_decoded_frames_equals_it(
    model, raw_model, clips, cli_scores
):
  assert raw_model.trained.calibration is None
  raw = {}
  for name in ("a", "b"):
    score, raw[name] = model.score(clips[name]), raw_model.score(clips[name])
    assert isinstance(score, float)
    assert score == pytest.approx(cli_scores[clips[name]][0], abs=1e-5)
    assert raw[name] == pytest.approx(cli_scores[clips[name]][1], abs=1e-6)
    assert model.score(Path(clips[name])) == score
    frames = all_frames(clips[name])
    assert model.score_frames(frames) == pytest.approx(score, abs=1e-5)
    assert raw_model.score_frames(frames) == pytest.approx(raw[name], abs=1e-5)
  assert abs(raw["a"] - raw["b"]) > 1e-3  # so the equalities above tell clips apart
  # A batch of two videos of one size: one score each, the same as alone.
  frames_a, frames_b = all_frames(clips["a"]), all_frames(clips["b"])
  length = min(len(frames_a), len(frames_b))
  batch = np.stack([frames_a[:length], frames_b[:length]])
  assert raw_model.score_frames(batch) == pytest.approx(
      [raw_model.score_frames(batch[0]), raw_model.score_frames(batch[1])], abs=1e-6
  )
  # Sampling and preparation are the file's: the model input of the frames is the file's.
  np.testing.assert_array_equal(model.prepare(frames_a), model.load_clip(clips["a"]))
  assert model.load_clip(clips["a"]).shape == model.input_shape
  # Scores are on the label scale the calibration was fitted on (the demo's VMAF range).
  low, high = model.trained.calibration.low, model.trained.calibration.high
  assert low <= model.score(clips["a"]) <= high
  assert model.scale.startswith("VMAF (0-100)")
  assert raw_model.scale.startswith("raw model output")


def test_score_many_gives_none_and_a_reason_for_each_file_it_cannot_score(model, clips):
  paths = [clips["a"], clips["missing"], clips["not_a_video"], clips["b"], clips["empty"]]
  scores = model.score_many(paths)
  errors = dict(model.last_errors)
  assert scores[0] == pytest.approx(model.score(clips["a"]), abs=1e-12)
  assert scores[3] == pytest.approx(model.score(clips["b"]), abs=1e-12)
  assert [scores[1], scores[2], scores[4]] == [None, None, None]
  assert sorted(errors) == sorted([clips["missing"], clips["not_a_video"], clips["empty"]])
  assert errors[clips["missing"]] == "file not found"
  assert "not a video" in errors[clips["not_a_video"]]
  assert "0 bytes" in errors[clips["empty"]]
  # Each call starts afresh; a single file that cannot be scored raises, naming it.
  assert model.score_many([clips["b"]]) == [model.score(clips["b"])] and model.last_errors == {}
  with pytest.raises(
      decode.VideoDecodeError, match=re.escape(clips["not_a_video"]) + ".*not a video"
  ):
    model.score(clips["not_a_video"])
  with pytest.raises(TypeError, match="score\\(path\\)"):
    model.score_many(clips["a"])


@pytest.mark.parametrize(
    "frames, wrong",
    [
        (np.zeros((12, 48, 64, 3), np.float32), "dtype float32"),
        (np.zeros((48, 64, 3), np.uint8), r"shape \(48, 64, 3\)"),
        (np.zeros((12, 48, 64, 4), np.uint8), r"shape \(12, 48, 64, 4\)"),
        (np.zeros((0, 48, 64, 3), np.uint8), r"shape \(0, 48, 64, 3\)"),
        (np.zeros((1, 2, 12, 48, 64, 3), np.uint8), r"shape \(1, 2, 12, 48, 64, 3\)"),
    ],
)
def test_frames_of_a_wrong_shape_or_dtype_are_refused_naming_the_expected_shape(
    model, frames, wrong
):
  with pytest.raises(ValueError, match=wrong + r".*uint8 \[T, H, W, 3\].*\[B, T, H, W, 3\]"):
    model.score_frames(frames)


# ----------------------------------------------------------------------------- display size


def test_display_size_scores_a_lower_rung_as_the_frames_it_was_trained_on(
    model, raw_model, half_size_ladder
):
  out, half = half_size_ladder["out"], half_size_ladder["half"]
  path = str(out / half["path"])  # 32×24, shown (and measured by VMAF) at 64×48
  display = (half["width"], half["height"])
  shown = manifest.read_display_frames(half, out)  # every frame, as training decoded the encode
  assert shown.shape == (8, 48, 64, 3)
  np.testing.assert_array_equal(model.load_clip(path, display_size=display), model.prepare(shown))
  for scorer in (model, raw_model):
    assert scorer.score(path, display_size=display) == pytest.approx(
        scorer.score_frames(shown), abs=1e-5
    )
  assert model.score_many([path], display_size=display) == [model.score(path, display)]
  # As the file is, its 24 px short side is upscaled by the model's own resize: other pixels,
  # another score.
  assert not np.array_equal(model.load_clip(path), model.load_clip(path, display_size=display))
  assert abs(raw_model.score(path) - raw_model.score(path, display_size=display)) > 1e-4


def test_a_file_already_at_the_display_size_is_read_as_without_it(
    model, half_size_ladder, monkeypatch
):
  out, full = half_size_ladder["out"], half_size_ladder["full"]
  path = str(out / full["path"])
  without = model.score(path)

  def not_decoded_again(*args, **kwargs):
    raise AssertionError("a file at the display size was decoded again by ffmpeg")

  monkeypatch.setattr(ffmpeg_reader, "read_frames_at_size", not_decoded_again)
  assert model.score(path, display_size=(64, 48)) == without
  np.testing.assert_array_equal(model.load_clip(path, display_size=(64, 48)), model.load_clip(path))


@pytest.mark.parametrize("bad", [(0, 48), (64, -48), (64,), (64, 48.0), (True, 48), "64x48"])
def test_a_display_size_other_than_two_positive_integers_is_refused_naming_it(model, clips, bad):
  expected = r"display_size must be \(width, height\).*got " + re.escape(repr(bad))
  with pytest.raises(ValueError, match=expected):
    model.score(clips["a"], display_size=bad)
  with pytest.raises(ValueError, match=expected):
    model.load_clip(clips["a"], display_size=bad)


# ----------------------------------------------------------------------------- quality_fn


def test_calibration_in_jax_is_the_numpy_calibration_and_its_derivative():
  raw = np.linspace(-3.0, 3.0, 61)
  fits = [
      calibration.Calibration(
          metrics.LogisticFit(metrics.FIT_LOGISTIC, (90.0, 20.0, 0.3, 0.7)), 20.0, 90.0
      ),
      calibration.Calibration(metrics.LogisticFit(metrics.FIT_LOGISTIC, (80.0, 30.0, -0.2, -0.5))),
      calibration.Calibration(metrics.LogisticFit(metrics.FIT_LINEAR, (12.0, 50.0)), 30.0, 70.0),
      calibration.Calibration(metrics.LogisticFit(metrics.FIT_CONSTANT, (42.0,)), 42.0, 42.0),
  ]
  for fit in fits:
    values = api.calibrate_jax(jnp.asarray(raw, jnp.float32), fit)
    np.testing.assert_allclose(values, fit(raw), rtol=1e-6, atol=1e-4)
    # Central differences of the float64 numpy map, away from the clipping kinks.
    derivative = jax.vmap(jax.grad(lambda x, fit=fit: api.calibrate_jax(x, fit)))(
        jnp.asarray(raw, jnp.float32)
    )
    step = 1e-6
    reference = (fit(raw + step) - fit(raw - step)) / (2 * step)
    smooth = (np.abs(fit.fit(raw) - fit.low) > 1e-3) & (np.abs(fit.fit(raw) - fit.high) > 1e-3)
    np.testing.assert_allclose(
        np.asarray(derivative)[smooth], reference[smooth], rtol=1e-4, atol=1e-4
    )
  assert api.calibrate_jax(jnp.float32(1.5), None) == 1.5


def test_quality_fn_is_the_score_and_its_pixel_gradient_matches_finite_differences(
    model, raw_model, clips
):
  clip = jnp.asarray(model.load_clip(clips["a"]), jnp.float32)
  raw_fn = jaxvqa.quality_fn(model, calibrated=False)
  score_fn = jaxvqa.quality_fn(model)
  # The value: the scorer's raw score of the clip, and the calibrated one is `score`.
  assert float(raw_fn(clip)) == pytest.approx(raw_model.score(clips["a"]), abs=1e-5)
  assert float(score_fn(clip)) == pytest.approx(model.score(clips["a"]), abs=1e-4)
  assert float(jax.jit(score_fn)(clip.astype(jnp.uint8))) == pytest.approx(
      float(score_fn(clip)), abs=1e-5
  )

  # One compilation of the gradient serves every call below (quality_fn's network is jitted).
  value, gradient = jax.value_and_grad(raw_fn)(clip)
  gradient = np.asarray(gradient)
  assert np.isfinite(gradient).all()
  assert np.count_nonzero(gradient) > gradient.size // 2
  # Float32 central differences with a step of 1 grey level on the 6 pixels of largest
  # gradient and 2 random ones: agreement to 2% of the largest gradient (float32 rounding of the
  # score, ~1e-7, over a step of 2, is far below that; curvature over ±1 level is what is left).
  flat = np.argsort(np.abs(gradient).ravel())[-6:].tolist()
  flat += np.random.default_rng(0).integers(0, gradient.size, 2).tolist()
  scale = float(np.abs(gradient).max())
  for index in flat:
    position = np.unravel_index(index, gradient.shape)
    step = np.zeros(gradient.shape, np.float32)
    step[position] = 1.0
    central = (float(raw_fn(clip + step)) - float(raw_fn(clip - step))) / 2.0
    assert central == pytest.approx(gradient[position], abs=0.02 * scale), position

  # The calibrated gradient is the raw one times the calibration's slope at the raw score (zero
  # where the calibration is clipped, as it is for this clip of the 2-step model).
  calibrated_gradient = np.asarray(jax.grad(score_fn)(clip))
  slope = float(jax.grad(lambda x: api.calibrate_jax(x, model.trained.calibration))(value))
  np.testing.assert_allclose(
      calibrated_gradient, slope * gradient, rtol=1e-4, atol=1e-6 * abs(slope) * scale
  )

  with pytest.raises(ValueError, match=r"shape \(2, 32, 32, 3\).*got shape \(1, 2, 32, 32, 3\)"):
    raw_fn(clip[None])


# Raw scores of the shipped model (jaxvqa-vmaf-lite0-1) on three real 320×240 clips, recorded when
# it shipped: taking gradients (and every later change to scoring) must leave them.
SHIPPED_RAW_SCORES = {
    ("bikes", 0): 0.12734676897525787,
    ("bikes", 100): 0.3338578939437866,
    ("bigbuckbunny", 0): -0.25039011240005493,
}


def test_shipped_quality_fn_has_finite_gradients_on_real_and_flat_clips_and_the_same_scores(
    tmp_path,
):
  shipped = jaxvqa.load()
  raw_fn = jaxvqa.quality_fn(shipped, calibrated=False)
  gradient_fn = jax.jit(jax.value_and_grad(raw_fn))
  real_clips = {
      key: np.asarray(
          shipped.load_clip(
              str(
                  media.make_clip(
                      tmp_path / f"{key[0]}_{key[1]}.mp4",
                      source=key[0],
                      size=(320, 240),
                      start_frame=key[1],
                  )
              )
          ),
          np.float32,
      )
      for key in SHIPPED_RAW_SCORES
  }
  for key, clip in real_clips.items():
    value, gradient = gradient_fn(clip)
    assert float(value) == pytest.approx(SHIPPED_RAW_SCORES[key], abs=1e-6), key
    assert np.isfinite(np.asarray(gradient)).all(), key
  one_clip = next(iter(real_clips.values()))
  flat_clips = {
      "black": np.zeros_like(one_clip),
      "grey": np.full_like(one_clip, 128.0),
      "white": np.full_like(one_clip, 255.0),
      "flat top half": np.concatenate(  # flat windows beside textured ones in one frame
          [np.full_like(one_clip[:, :64], 90.0), one_clip[:, 64:]], axis=1
      ),
  }
  for name, clip in flat_clips.items():
    value, gradient = gradient_fn(clip)
    assert np.isfinite(float(value)) and np.isfinite(np.asarray(gradient)).all(), name


def test_quality_fn_of_a_workdir_loads_the_best_checkpoint(trained_workdir, model, clips):
  clip = jnp.asarray(model.load_clip(clips["b"]), jnp.float32)
  assert float(jaxvqa.quality_fn(str(trained_workdir))(clip)) == pytest.approx(
      model.score(clips["b"]), abs=1e-4
  )


# ----------------------------------------------------------------------------- example and README


def load_example():
  path = ROOT / "examples" / "sharpen_with_quality_loss.py"
  spec = importlib.util.spec_from_file_location("sharpen_with_quality_loss", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_example_blur_is_the_binomial_filter_and_amount_zero_is_the_clip(clips, model):
  example = load_example()
  clip = np.asarray(model.load_clip(clips["a"]), np.float32)
  reference = clip
  for axis in (1, 2):
    reference = scipy.ndimage.convolve1d(
        reference, np.array([1, 4, 6, 4, 1]) / 16, axis=axis, mode="nearest"
    )
  np.testing.assert_allclose(example.blur(jnp.asarray(clip)), reference, atol=1e-3)
  np.testing.assert_array_equal(example.unsharp_mask(jnp.asarray(clip), 0.0), clip)


def test_example_tunes_the_filter_up_the_gradient_and_prints_the_scores_it_reached(
    trained_workdir, model, clips, capsys
):
  example = load_example()
  assert example.main([clips["a"], "--workdir", str(trained_workdir), "--steps", "3"]) == 0
  printed = capsys.readouterr().out
  before = re.search(r"score before: (\S+) \(raw (\S+); amount 0, gradient (\S+)\)", printed)
  after = re.search(r"score after: (\S+) \(raw (\S+); amount (\S+), (\d+) steps\)", printed)
  assert before and after, printed
  score_before, raw_before, gradient = (float(value) for value in before.groups())
  score_after, raw_after, amount, steps = (float(value) for value in after.groups())
  # What it printed is f of the clip before and after the filter it found.
  clip = jnp.asarray(model.load_clip(clips["a"]), jnp.float32)
  score_fn, raw_fn = jaxvqa.quality_fn(model), jaxvqa.quality_fn(model, calibrated=False)
  sharpened = example.unsharp_mask(clip, amount)
  assert score_before == pytest.approx(float(score_fn(clip)), abs=1e-5)
  assert raw_before == pytest.approx(float(raw_fn(clip)), abs=1e-5)
  assert score_after == pytest.approx(float(score_fn(sharpened)), abs=1e-5)
  assert raw_after == pytest.approx(float(raw_fn(sharpened)), abs=1e-5)
  assert gradient == pytest.approx(
      float(jax.grad(lambda a: raw_fn(example.unsharp_mask(clip, a)))(0.0)), rel=1e-4
  )
  # The tiny model's preference is arbitrary; that the ascent follows it and never loses is not.
  assert score_after >= score_before and raw_after >= raw_before
  assert gradient != 0 and steps >= 1
  assert math.copysign(1.0, amount) == math.copysign(1.0, gradient)
  history = example.tune(raw_fn, clip, steps=3, learning_rate=0.25)
  raw_scores = [raw for _, raw, _ in history]
  assert raw_scores == sorted(raw_scores) and raw_scores[-1] > raw_scores[0]
  assert history[-1][0] == pytest.approx(amount, abs=1e-6)


def test_readme_python_api_block_runs(clips, tmp_path, monkeypatch, capsys):
  readme = (ROOT / "README.md").read_text()
  section = readme.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
  code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
  code, clip_names = re.subn(r"^CLIP = .*$", f"CLIP = {clips['a']!r}", code, flags=re.MULTILINE)
  assert clip_names == 1
  monkeypatch.chdir(tmp_path)  # where "missing.mp4" is missing
  namespace = {}
  exec(compile(code, "README.md:Python API", "exec"), namespace)
  printed = capsys.readouterr().out.splitlines()
  # The block runs on the shipped model, as on a fresh install.
  assert "shipped" in repr(namespace["m"])
  assert namespace["m"].last_errors == {"missing.mp4": "file not found"}
  assert float(printed[0].split()[0]) == pytest.approx(namespace["m"].score(clips["a"]), abs=1e-12)
  assert 0.0 <= float(printed[0].split()[0]) <= 100.0
  assert np.isfinite(float(namespace["score"]))


def test_score_without_a_workdir_scores_with_the_shipped_model(tmp_path, capsys, monkeypatch):
  clip = media.make_clip(tmp_path / "clip.mp4")
  assert cli.main(["score", str(clip), "--format", "jsonl"]) == 0
  row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert row["score"] == pytest.approx(jaxvqa.load().score(clip), abs=1e-9)
  assert "shipped" in json.dumps(row)
  monkeypatch.setattr(inference, "SHIPPED_DIR", tmp_path / "none")
  assert cli.main(["score", str(clip)]) == 2
  error = capsys.readouterr().err.strip()
  assert error.startswith("jaxvqa score: this jaxvqa ") and "has no shipped model" in error
  assert "\n" not in error

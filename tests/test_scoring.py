"""`jaxvqa score`: file discovery, clip sampling, bad files, output formats, determinism."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import subprocess
import sys

import numpy as np
import pytest

import media
from jaxvqa import calibration as calibration_lib, cli, inference, scoring
from jaxvqa.data import pipeline, video

ODD_NAME = "-lead dash 'quoted' \"clip\" name.mp4"


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
  """Good clips in four container/codec pairs (one in a subdirectory, one with an odd name); bad
  files: truncated, text with a video extension, zero bytes, a codec decord lacks (AV1); and a
  file without a video extension, which directory search skips."""
  root = tmp_path_factory.mktemp("clips")
  good = [
      media.make_clip(root / "h264.mp4", frames=16),
      media.make_clip(root / "matroska.mkv", source="carphone_pristine", frames=12),
      media.make_clip(root / "mpeg4.avi", codec="mpeg4", frames=12, start_frame=20),
      media.make_clip(root / "nested" / "vp9.webm", codec="libvpx-vp9", frames=10, start_frame=40),
      media.make_clip(root / ODD_NAME, frames=9, start_frame=60),
  ]
  truncated = media.make_truncated_copy(good[0], root / "truncated.mp4")
  not_a_video = media.make_not_a_video(root / "notes.mkv")
  empty = media.make_empty_file(root / "empty.mov")
  unknown_codec = media.make_clip(root / "av1.mkv", codec="libsvtav1", frames=4)
  (root / "readme.txt").write_text("not a video and no video extension: skipped")
  bad = {truncated: "truncated", not_a_video: "not a video", empty: "0 bytes",
         unknown_codec: "no video stream decord can decode"}
  return {"root": root, "good": good, "bad": list(bad), "reasons": bad}


@pytest.fixture(scope="module")
def trained(trained_workdir):
  return inference.load_trained_model(trained_workdir)


# ----------------------------------------------------------------------------- without a model


def test_default_batch_is_the_inference_default():
  assert scoring.DEFAULT_PER_DEVICE_BATCH == inference.DEFAULT_PER_DEVICE_BATCH


def test_clip_options_are_the_evaluation_frame_options(tiny_config):
  # Training, evaluation and scoring share one FrameOptions class and one reading of config.data.
  assert pipeline.FrameOptions is video.FrameOptions
  for sampling in ("resize_crop", "fragments"):
    tiny_config.data.sampling = sampling
    assert dataclasses.asdict(video.FrameOptions.from_data_config(tiny_config.data)) == {
        "num_frames": tiny_config.data.num_frames, "size": tiny_config.data.frame_size,
        "mode": sampling, "fragment_grid": 8}


def test_scoring_imports_neither_grain_nor_tfds():
  # Inference machines carry JAX, Orbax, decord and Pillow, not the training input stack.
  blocked = "; ".join(f"sys.modules[{name!r}] = None" for name in (
      "grain", "tensorflow_datasets", "tensorflow", "imageio_ffmpeg", "matplotlib"))
  code = f"import sys; {blocked}; from jaxvqa import cli, inference, scoring; cli.build_parser()"
  completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=120)
  assert completed.returncode == 0, completed.stderr[-2000:]


def test_segment_bounds_cover_the_video_in_order():
  assert scoring.segment_bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]
  # Fewer frames than segments: every segment still owns a frame.
  assert scoring.segment_bounds(2, 4) == [(0, 1), (0, 1), (1, 2), (1, 2)]


def test_whole_video_clip_is_the_evaluation_clip_and_segments_sample_their_range(clip_dir):
  path = clip_dir["good"][0]  # 16 frames
  for mode, size in (("resize_crop", 32), ("fragments", 32)):
    options = pipeline.FrameOptions(num_frames=4, size=size, mode=mode, fragment_grid=4)
    decoded = scoring.decode_video(path, options, num_segments=2)
    expected = video.load_clip(path.read_bytes(), num_frames=4, size=size, mode=mode,
                               fragment_grid=4, train=False)
    np.testing.assert_array_equal(decoded.clips[0], expected)
  assert decoded.clips.shape == (3, 4, 32, 32, 3)
  assert decoded.segments == ((0, 8), (8, 16))
  # Segment 2 = frames 8..15, sampled at its centres 9, 11, 13, 15.
  frames = video.read_frames(path, [9, 11, 13, 15])
  np.testing.assert_array_equal(
      decoded.clips[2], video.extract_fragments(frames, grid=4, patch=8, rng=None))


def test_find_videos_walks_directories_expands_globs_and_reports_missing(clip_dir, tmp_path):
  root = clip_dir["root"]
  found, failures = scoring.find_videos([str(root)])
  names = sorted(p.rsplit("/", 1)[-1] for p in found)
  assert names == sorted([ODD_NAME, "av1.mkv", "empty.mov", "h264.mp4", "matroska.mkv",
                          "mpeg4.avi", "notes.mkv", "truncated.mp4", "vp9.webm"])
  assert failures == []
  # A literal name with glob characters, a pattern, a repeat, a missing file and a dead pattern.
  literal = media.make_clip(tmp_path / "take[1].mp4", frames=4)
  found, failures = scoring.find_videos(
      [str(literal), str(root / "**" / "*.webm"), str(root / "h264.mp4"), str(root / "h264.mp4"),
       str(tmp_path / "missing.mp4"), str(tmp_path / "*.mov")])
  assert found == [str(literal), str(root / "nested" / "vp9.webm"), str(root / "h264.mp4")]
  assert [(f.path.rsplit("/", 1)[-1], f.reason) for f in failures] == [
      ("missing.mp4", "file not found"), ("*.mov", "no file matches this pattern")]


# ----------------------------------------------------------------------------- with a model


def test_score_directory_reports_bad_files_and_scores_the_rest(trained_workdir, clip_dir,
                                                                tmp_path, capsys):
  out = tmp_path / "scores.csv"
  status = cli.main(["score", "--workdir", str(trained_workdir), "--segments", "2",
                     "--format", "csv", "--output", str(out), "--workers", "2",
                     str(clip_dir["root"])])
  stderr = capsys.readouterr().err
  assert status == scoring.EXIT_SOME_FAILED
  for bad, reason in clip_dir["reasons"].items():
    line = next(line for line in stderr.splitlines() if line.startswith(f"jaxvqa score: {bad}: "))
    assert reason in line, line
  assert "readme.txt" not in stderr
  rows = {row["path"]: row for row in csv.DictReader(io.StringIO(out.read_text()))}
  assert sorted(rows) == sorted(str(p) for p in clip_dir["good"] + clip_dir["bad"])
  for path in clip_dir["good"]:
    row = rows[str(path)]
    assert row["error"] == ""
    assert all(math.isfinite(float(row[key])) for key in ("score", "raw_score", "segment_1",
                                                          "segment_2"))
    assert row["step"] == "2" and row["checkpoint"].endswith("best/2")
    assert "SwinV2 embed_dim=8" in row["model"]
  for path in clip_dir["bad"]:
    assert rows[str(path)]["score"] == "" and rows[str(path)]["error"]


def test_odd_file_name_after_double_dash_and_json_output(trained_workdir, clip_dir, capsys):
  odd = str(clip_dir["root"] / ODD_NAME)
  status = cli.main(["score", "--workdir", str(trained_workdir), "--format", "json",
                     "--no-progress", "--", odd])
  captured = capsys.readouterr()
  assert status == scoring.EXIT_OK, captured.err
  document = json.loads(captured.out)
  assert [video["path"] for video in document["videos"]] == [odd]
  assert document["failures"] == []
  assert document["checkpoint"]["step"] == 2 and document["checkpoint"]["which"] == "best"
  assert document["model_config"]["backbone"]["embed_dim"] == 8
  calibration = calibration_lib.from_saved(document["calibration"])
  video_score = document["videos"][0]
  assert video_score["score"] == pytest.approx(float(calibration([video_score["raw_score"]])[0]))


def test_table_output_latest_raw_weights_and_usage_errors(trained_workdir, clip_dir, tmp_path,
                                                           capsys):
  clip = str(clip_dir["good"][1])
  assert cli.main(["score", "--workdir", str(trained_workdir), "--no-progress", clip]) == 0
  table = capsys.readouterr().out
  assert "(step 2, best, ema weights)" in table and "label scale (calibration:" in table
  assert table.splitlines()[-1].endswith(clip)
  # A periodic checkpoint carries no calibration: raw scores, and the output says so.
  assert cli.main(["score", "--workdir", str(trained_workdir), "--which", "latest", "--raw-weights",
                   "--format", "json", "--no-progress", clip]) == 0
  document = json.loads(capsys.readouterr().out)
  assert document["calibration"] is None and "raw model output" in document["scale"]
  assert document["checkpoint"]["which"] == "latest" and document["checkpoint"]["weights"] == "raw"
  assert document["videos"][0]["score"] == document["videos"][0]["raw_score"]
  # Nothing to score, or no run: usage errors (2), before any model is loaded.
  assert cli.main(["score", "--workdir", str(trained_workdir), str(tmp_path)]) == scoring.EXIT_USAGE
  assert "no video files to score" in capsys.readouterr().err
  empty_workdir = tmp_path / "not-a-run"
  empty_workdir.mkdir()
  assert cli.main(["score", "--workdir", str(empty_workdir), clip]) == scoring.EXIT_USAGE
  assert "config.json not found" in capsys.readouterr().err


def test_scores_are_identical_alone_in_a_batch_and_on_one_or_eight_devices(
    trained_workdir, clip_dir, trained):
  good = [str(p) for p in clip_dir["good"]]
  many = good * 2 + good[:1]  # 11 clips: on 1 device a full batch of 8 and a padded one
  on_one = inference.load_trained_model(trained_workdir, num_devices=1)
  assert trained.num_devices == 8
  batch_of_many, failures = scoring.score_videos(many, on_one, workers=2)
  assert failures == []
  reference = np.array([s.raw_score for s in batch_of_many])
  for models in (on_one, trained):
    for path in (good[0], good[-1]):
      (alone,), _ = scoring.score_videos([path], models, workers=1)
      assert alone.raw_score == reference[many.index(path)], (path, models.num_devices)
  on_eight, _ = scoring.score_videos(many, trained, workers=2)
  np.testing.assert_array_equal([s.raw_score for s in on_eight], reference)
  # The same file at different positions of the stream scores the same.
  np.testing.assert_array_equal(reference[:len(good)], reference[len(good):2 * len(good)])

"""`jaxvqa score` outputs for streaming engineers: pooled statistics, segments by seconds,
`--frames`, the VMAF-like JSON and the provenance every format carries (issue 16, item 4)."""

from __future__ import annotations

import copy
import csv
import io
import json
import math
from pathlib import Path

import imageio_ffmpeg
import jax
import numpy as np
import pytest
import scipy.stats
from flax import serialization

import jaxvqa
import media
from jaxvqa import cli
from jaxvqa.evaluate import calibration
from jaxvqa.serve import inference
from jaxvqa import scoring
from jaxvqa.commands import score as score_command
from jaxvqa.scoring import provenance
from jaxvqa.data import ffmpeg, video


@pytest.fixture(scope="module")
def trained(trained_workdir):
  return inference.load_trained_model(trained_workdir)


@pytest.fixture
def model(monkeypatch, trained):
  """`jaxvqa score` gets the module's loaded model; returns the clip counts sent to it."""
  sent = []
  dispatch = trained.dispatch

  def counted(clips, per_device_batch):
    sent.append(len(clips))
    return dispatch(clips, per_device_batch)

  monkeypatch.setattr(inference, "load_trained_model", lambda *args, **kwargs: trained)
  monkeypatch.setattr(trained, "dispatch", counted)
  return sent


# Fixture data, alike in shape to test_api.py's clips.
@pytest.fixture(scope="module")
def clips(tmp_path_factory):
  root = tmp_path_factory.mktemp("outputs")
  return {
      "plain": str(media.make_clip(root / "plain.mp4", frames=8)),
      "long": str(media.make_clip(root / "long.mp4", frames=16, start_frame=40)),
      "vfr": str(media.make_vfr_clip(root / "vfr.mp4")),
  }


def score(capsys, *args) -> tuple[int, str, str]:
  status = cli.main(["score", "--workdir", "loaded-by-the-model-fixture", "--no-progress", *args])
  captured = capsys.readouterr()
  return status, captured.out, captured.err


def jsonl(text: str) -> list[dict]:
  return [json.loads(line) for line in text.splitlines()]


# ----------------------------------------------------------------------------- pooled statistics


def test_pooled_statistics_are_libvmafs_and_numpys(tmp_path):
  # libvmaf's own JSON log of 6 noisy frames against clean ones: its per-frame scores and the
  # pooled_metrics it computes from them.
  pattern = "testsrc=size=160x120:rate=25"
  graph = "[0:v]noise=alls=60:allf=t[noisy];[noisy][1:v]libvmaf=log_fmt=json:log_path=vmaf.json"
  ffmpeg.run_ffmpeg(
      ["-v", "error", "-f", "lavfi", "-i", pattern, "-f", "lavfi", "-i", pattern, "-frames:v", "6"]
      + ["-lavfi", graph, "-f", "null", "-"],
      cwd=tmp_path,
  )
  log = json.loads((tmp_path / "vmaf.json").read_text())
  frames = np.array([frame["metrics"]["vmaf"] for frame in log["frames"]])
  assert frames.std() > 1  # the frames really differ, so the statistics tell the formulas apart
  pooled = scoring.pool_scores(frames)
  reference = log["pooled_metrics"]["vmaf"]  # libvmaf writes 6 decimals
  for name in ("mean", "min", "max", "harmonic_mean"):
    assert pooled[name] == pytest.approx(reference[name], abs=2e-6), name
  # libvmaf's harmonic mean is of s + 1; the plain one differs here by more than its rounding.
  assert abs(scipy.stats.hmean(frames) - reference["harmonic_mean"]) > 1e-5
  assert pooled["p5"] == np.percentile(frames, 5)
  assert scoring.pool_scores([]) is None
  # Raw scores can be below -1, where the harmonic mean of s + 1 does not exist.
  assert scoring.pool_scores([-2.0, 3.0])["harmonic_mean"] is None
  assert scoring.pool_scores([1.0, math.nan]) == dict.fromkeys(scoring.POOLED_STATISTICS)


def test_pooled_statistics_of_real_segment_scores(clips, trained, model, monkeypatch, capsys):
  # The 2-step model's own calibration clips every score to the top of its validation labels:
  # a line that does not clip lets the segments differ.
  spread = copy.copy(trained)
  spread.__dict__.pop("identity", None)
  spread.calibration = calibration.from_saved(
      {"kind": "linear", "params": [20.0, 60.0], "label_range": [0.0, 100.0]}
  )
  monkeypatch.setattr(inference, "load_trained_model", lambda *args, **kwargs: spread)
  status, out, _ = score(capsys, "--format", "jsonl", "--segments", "5", clips["long"])
  assert status == 0
  (row,) = jsonl(out)
  segment_scores = np.array([segment["score"] for segment in row["segments"]])
  assert len(segment_scores) == 5 and segment_scores.std() > 0
  pooled = row["pooled"]
  assert pooled["mean"] == pytest.approx(np.mean(segment_scores), rel=1e-12)
  assert pooled["min"] == np.min(segment_scores) and pooled["max"] == np.max(segment_scores)
  assert pooled["p5"] == pytest.approx(np.percentile(segment_scores, 5), rel=1e-12)
  assert pooled["harmonic_mean"] == pytest.approx(
      1 / np.mean(1 / (segment_scores + 1)) - 1, rel=1e-12
  )


# ----------------------------------------------------------------------------- segments by seconds


def test_segment_seconds_follow_the_stream_timestamps(clips, model, capsys):
  seconds = 0.25
  for clip in (clips["vfr"], clips["long"]):
    # The container's own timestamps (ffmpeg's packets, not decord's): frame k belongs to window
    # ⌊t_k / S⌋.
    pts, (numerator, denominator) = media.presentation_timestamps(clip)
    starts = np.round((np.array(pts) - pts[0]) * numerator / denominator, 6)
    windows = np.floor(starts / seconds).astype(int)
    cuts = [0, *(np.flatnonzero(np.diff(windows)) + 1), len(starts)]
    expected_frames = list(zip(cuts[:-1], cuts[1:]))
    status, out, _ = score(capsys, "--format", "jsonl", "--segment-seconds", str(seconds), clip)
    assert status == 0
    (row,) = jsonl(out)
    assert row["segmented_by"] == "seconds 0.25"
    segments = row["segments"]
    assert [(s["start_frame"], s["end_frame"]) for s in segments] == expected_frames
    # Each segment starts when its first frame does and ends when the next segment starts; the
    # last ends when its last frame does (the last one shorter).
    np.testing.assert_allclose([s["start_seconds"] for s in segments], starts[cuts[:-1]], atol=1e-6)
    np.testing.assert_allclose(
        [s["end_seconds"] for s in segments[:-1]], starts[cuts[1:-1]], atol=1e-6
    )
    assert starts[-1] < segments[-1]["end_seconds"] <= (windows[-1] + 1) * seconds
    assert [s["frame"] for s in segments] == [(a + b) // 2 for a, b in expected_frames]
    if clip == clips["vfr"]:  # 8 frames at 30 fps fill the first window, then 2 each at 8 fps
      assert [b - a for a, b in expected_frames] == [8, 2, 2, 2, 2]


def test_segment_options_are_exclusive_and_checked_before_the_model_loads(clips, model, capsys):
  with pytest.raises(SystemExit):
    cli.main(["score", "--segments", "2", "--segment-seconds", "1", clips["plain"]])
  assert "not allowed with argument" in capsys.readouterr().err
  for option, value, message in (
      ("--segment-seconds", "0", "--segment-seconds must be a positive number of seconds"),
      ("--segment-seconds", "nan", "--segment-seconds must be a positive number of seconds"),
      ("--frames", "0", "--frames must be a positive number of frames, got 0"),
      ("--segments", "-1", "--segments must be >= 0"),
  ):
    status, _, err = score(capsys, option, value, clips["plain"])
    assert status == score_command.EXIT_USAGE and message in err, err
  assert model == []


# ----------------------------------------------------------------------------- --frames


def test_frames_samples_several_clips_and_pools_their_raw_scores(clips, trained, model, capsys):
  clip_length = trained.frames.num_frames  # T = 2 in the tests' tiny model
  assert clip_length == 2
  status, out, _ = score(capsys, "--format", "jsonl", clips["plain"])  # 8 frames
  (default,) = jsonl(out)
  # Default: T frames, the centres of T equal parts: the clip evaluation scores.
  assert default["frames"] == 2 and default["frame_indices"] == [2, 6]
  status, out, _ = score(capsys, "--format", "jsonl", "--frames", "4", clips["plain"])
  assert status == 0 and model == [1, 2]
  (row,) = jsonl(out)
  # 4 frames: the centres of 4 equal parts (1, 3, 5, 7), dealt into 2 clips (1, 5) and (3, 7),
  # each one frame from each half of the video, as a training clip is.
  assert row["frames"] == 4 and row["frame_indices"] == [1, 3, 5, 7]
  options = trained.frames
  decoded = media.ffmpeg_decode_frames(clips["plain"], [1, 5, 3, 7])
  prepared = video.prepare_frames(
      decoded, options.size, mode=options.mode, fragment_grid=options.fragment_grid
  )
  raw = trained.raw_scores(prepared.reshape(2, 2, *prepared.shape[1:]))
  assert row["raw_score"] == pytest.approx(np.mean(raw), abs=1e-6)
  assert row["score"] == pytest.approx(trained.calibrate(np.mean(raw, keepdims=True))[0], abs=1e-6)
  # Not a multiple of T: refused once the model says T, before any clip is scored.
  sent = len(model)
  status, _, err = score(capsys, "--frames", "3", clips["plain"])
  assert status == score_command.EXIT_USAGE
  assert "--frames 3: the model scores clips of 2 frames" in err and "4 = 2 clips" in err
  assert len(model) == sent


def test_frame_scores_are_the_segments_of_the_sampled_frames(clips, model, capsys):
  status, out, _ = score(
      capsys, "--format", "jsonl", "--frames", "4", "--frame-scores", clips["long"]
  )
  (row,) = jsonl(out)
  assert row["segmented_by"] == "frames 4"
  # One segment per sampled frame: the quarter of the video whose centre it is.
  assert [s["frame"] for s in row["segments"]] == row["frame_indices"] == [2, 6, 10, 14]
  assert [(s["start_frame"], s["end_frame"]) for s in row["segments"]] == [
      (0, 4),
      (4, 8),
      (8, 12),
      (12, 16),
  ]
  status, out, _ = score(capsys, "--format", "jsonl", "--segments", "4", clips["long"])
  (by_count,) = jsonl(out)
  assert [s["score"] for s in row["segments"]] == [s["score"] for s in by_count["segments"]]


# ----------------------------------------------------------------------------- provenance, formats


def test_every_format_names_scale_labels_model_version_and_frames(
    clips, trained, model, tmp_path, capsys
):
  libvmaf = libvmaf_version_from_its_log(tmp_path)
  label = f"VMAF vmaf_v0.6.1 (libvmaf {libvmaf} in ffmpeg {imageio_ffmpeg.get_ffmpeg_version()})"
  expected = {
      "label_source": label,
      "model_id": trained.identity,
      "model_version": "run step 2 (best, ema weights)",
      "jaxvqa_version": jaxvqa.__version__,
  }
  outputs = {}
  for output_format in scoring.FORMATS:
    outputs[output_format] = tmp_path / f"scores.{output_format}"
    status, _, _ = score(
        capsys,
        "--format",
        output_format,
        "--segments",
        "2",
        "--output",
        str(outputs[output_format]),
        clips["plain"],
        clips["vfr"],
    )
    assert status == 0
  rows = jsonl(outputs["jsonl"].read_text())
  for row in rows:
    assert {key: row[key] for key in expected} == expected
    assert row["frames"] == 2 and len(row["frame_indices"]) == 2 and row["scale"].startswith("VMAF")
  for row in csv.DictReader(io.StringIO(outputs["csv"].read_text(), newline="")):
    assert {key: row[key] for key in expected} == expected
    assert row["frames"] == "2" and row["segmented_by"] == "segments 2"
    assert row["frame_indices"] == " ".join(
        map(str, rows[0 if "plain" in row["path"] else 1]["frame_indices"])
    )
    assert float(row["pooled_mean"]) == pytest.approx(
        (float(row["segment_1"]) + float(row["segment_2"])) / 2
    )
  for output_format in ("json", "vmaf-json"):
    document = json.loads(outputs[output_format].read_text())
    assert {key: document[key] for key in expected if key != "label_source"} == {
        key: value for key, value in expected.items() if key != "label_source"
    }
    assert document["label_source"] == label and document["frames"] == 2
  table = outputs["table"].read_text()
  for line in (
      f"labels:      {label}",
      f"jaxvqa:      {jaxvqa.__version__}",
      "frames:      2 per video (1 clip of 2)",
      "model:       run step 2 (best, ema",
  ):
    assert line in table, table


def libvmaf_version_from_its_log(work_dir: Path) -> str:
  pattern = "testsrc=size=64x64:rate=25"
  ffmpeg.run_ffmpeg(
      ["-v", "error", "-f", "lavfi", "-i", pattern, "-f", "lavfi", "-i", pattern, "-frames:v", "1"]
      + ["-lavfi", "[0:v][1:v]libvmaf=log_fmt=json:log_path=own.json", "-f", "null", "-"],
      cwd=work_dir,
  )
  return json.loads((work_dir / "own.json").read_text())["version"]


def test_vmaf_json_parses_and_matches_the_rows(clips, model, tmp_path, capsys):
  args = [clips["long"], clips["vfr"], str(tmp_path / "missing.mp4")]
  status, out, _ = score(capsys, "--format", "jsonl", "--segments", "3", *args)
  assert status == score_command.EXIT_SOME_FAILED
  rows = {row["path"]: row for row in jsonl(out)}
  status, out, _ = score(capsys, "--format", "vmaf-json", "--segments", "3", *args)
  assert status == score_command.EXIT_SOME_FAILED
  document = json.loads(out)
  assert document["segmented_by"] == "segments 3"
  assert document["failures"] == [{"path": args[2], "reason": "file not found"}]
  for video_document in document["videos"]:
    row = rows[video_document["path"]]
    assert [frame["frameNum"] for frame in video_document["frames"]] == [
        (s["start_frame"] + s["end_frame"]) // 2 for s in row["segments"]
    ]
    assert [frame["metrics"] for frame in video_document["frames"]] == [
        {"jaxvqa": s["score"], "jaxvqa_raw": s["raw_score"]} for s in row["segments"]
    ]
    assert video_document["pooled_metrics"] == {"jaxvqa": row["pooled"]}
    assert video_document["aggregate_metrics"] == {
        "jaxvqa": row["score"],
        "jaxvqa_raw": row["raw_score"],
    }
    assert video_document["fps"] == row["fps"] and video_document["version"] == jaxvqa.__version__
  # Without a segment option, vmaf-json scores each frame the whole-video score samples.
  status, out, _ = score(capsys, "--format", "vmaf-json", clips["long"])
  (video_document,) = json.loads(out)["videos"]
  assert [frame["frameNum"] for frame in video_document["frames"]] == [4, 12]
  assert set(video_document["pooled_metrics"]["jaxvqa"]) == set(scoring.POOLED_STATISTICS)


def test_resume_refuses_rows_of_an_earlier_version_or_other_frames(clips, model, tmp_path, capsys):
  out = tmp_path / "scores.jsonl"
  status, _, _ = score(capsys, "--format", "jsonl", "--output", str(out), clips["plain"])
  assert status == 0
  (row,) = jsonl(out.read_text())
  # The columns written out here independently of scoring/records.py's list (declarative).
  earlier = {
      key: value
      for key, value in row.items()
      if key
      in (
          "path",
          "score",
          "raw_score",
          "num_frames",
          "fps",
          "segments",
          "error",
          "scale",
          "model_id",
          "checkpoint",
          "step",
          "model",
      )
  }
  partial = Path(f"{out}.partial")
  partial.write_text(json.dumps(earlier) + "\n")
  status, _, err = score(
      capsys, "--format", "jsonl", "--output", str(out), "--resume", clips["plain"]
  )
  assert status == score_command.EXIT_USAGE and "written by an earlier jaxvqa score" in err
  partial.write_text(json.dumps(row) + "\n")
  status, _, err = score(
      capsys, "--format", "jsonl", "--output", str(out), "--resume", "--frames", "4", clips["plain"]
  )
  assert status == score_command.EXIT_USAGE
  assert "scored with --frames 2 and segments none; this run asks for --frames 4" in err
  status, _, err = score(
      capsys, "--format", "jsonl", "--output", str(out), "--resume", clips["plain"]
  )
  assert status == 0 and "1 of 1 files already scored" in err
  assert jsonl(out.read_text()) == [row]


def test_a_shipped_model_names_its_id_and_label_from_its_model_json(trained, tmp_path):
  directory = tmp_path / "shipped"
  directory.mkdir()
  params = jax_to_numpy(trained.params)
  (directory / inference.SHIPPED_PARAMS).write_bytes(serialization.msgpack_serialize(params))
  data = trained.config.data
  card = {
      "id": "jaxvqa-test-s-3",
      "config": {
          "model": trained.config.model.to_dict(),
          "data": {
              key: data[key] for key in ("sampling", "num_frames", "frame_size", "fragment_grid")
          },
      },
      "calibration": trained.calibration.to_dict(),
      "training": {"label": "VMAF (libvmaf vmaf_v0.6.1 through imageio-ffmpeg's ffmpeg)"},
  }
  (directory / inference.SHIPPED_CARD).write_text(json.dumps(card))
  shipped = inference.load_model(directory, num_devices=1)
  provenance = scoring.Provenance.of(shipped)
  assert provenance.model_version == "jaxvqa-test-s-3"
  assert provenance.label_source == card["training"]["label"]
  # Its calibration was fitted where it was trained (kfold_ship.ship_model); a run's on validation.
  assert provenance.scale.startswith("VMAF (0-100), calibrated on its training encodes: ")
  assert scoring.Provenance.of(trained).scale.startswith(
      "VMAF (0-100), calibrated on the validation split: "
  )
  assert provenance.model_id == trained.identity  # the same weights, calibration and frames


def jax_to_numpy(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


def test_label_source_without_ffmpeg_says_the_versions_are_unknown(trained, monkeypatch):
  def missing():
    raise ImportError("No module named 'imageio_ffmpeg'")

  monkeypatch.setattr(ffmpeg, "ffmpeg_exe", missing)
  provenance.vmaf_label_source.cache_clear()
  try:
    assert scoring.label_source(trained) == (
        "VMAF vmaf_v0.6.1 (libvmaf in imageio-ffmpeg's ffmpeg; versions unknown: imageio-ffmpeg "
        "is not installed)"
    )
  finally:
    provenance.vmaf_label_source.cache_clear()


# ----------------------------------------------------------------------------- --display-size


@pytest.mark.parametrize(
    "value", ["320", "320x", "0x180", "320x0", "axb", "320x180x2", "320 x 180", "99999x99999"]
)
def test_display_size_that_is_not_width_x_height_exits_2_naming_it(clips, model, capsys, value):
  status, out, err = score(capsys, f"--display-size={value}", clips["plain"])
  assert status == score_command.EXIT_USAGE and out == "" and model == []
  assert f"jaxvqa score: --display-size {value!r}: expected WIDTHxHEIGHT" in err


def test_display_size_without_ffmpeg_exits_2_naming_both(clips, model, monkeypatch, capsys):
  def no_ffmpeg():
    raise RuntimeError("No ffmpeg exe could be found")

  monkeypatch.setattr(ffmpeg, "ffmpeg_exe", no_ffmpeg)
  status, _, err = score(capsys, "--display-size", "64x48", clips["plain"])
  assert status == score_command.EXIT_USAGE and model == []
  assert "--display-size" in err and "decodes with ffmpeg" in err
  assert "No ffmpeg exe could be found" in err


def test_resume_refuses_rows_scored_at_another_display_size(
    half_size_ladder, model, tmp_path, capsys
):
  path = str(half_size_ladder["out"] / half_size_ladder["half"]["path"])
  out = tmp_path / "scores.jsonl"
  status, _, _ = score(
      capsys, "--format", "jsonl", "--display-size", "64x48", "--output", str(out), path
  )
  assert status == 0
  (row,) = jsonl(out.read_text())
  assert row["display_size"] == "64x48"
  partial = Path(f"{out}.partial")
  for other, said in (
      (["--display-size", "128x96"], "every file at 128x96 (--display-size 128x96)"),
      ([], "each file at its own size (no --display-size)"),
  ):
    partial.write_text(json.dumps(row) + "\n")
    status, _, err = score(
        capsys, "--format", "jsonl", "--output", str(out), "--resume", *other, path
    )
    assert status == score_command.EXIT_USAGE
    assert (
        "was scored decoding every file at 64x48 (--display-size 64x48); this run decodes "
        f"{said}: resume with the same --display-size"
    ) in err
  status, _, err = score(
      capsys, "--format", "jsonl", "--output", str(out), "--resume", "--display-size=64x48", path
  )
  assert status == 0 and "1 of 1 files already scored" in err
  assert jsonl(out.read_text()) == [row]
  # A row written before the option existed was scored at the file's own size.
  before = {key: value for key, value in row.items() if key != "display_size"}
  partial.write_text(json.dumps(before) + "\n")
  status, _, err = score(
      capsys, "--format", "jsonl", "--output", str(out), "--resume", "--display-size=64x48", path
  )
  assert status == score_command.EXIT_USAGE
  assert "was scored decoding each file at its own size (no --display-size)" in err


def test_files_the_model_upscales_itself_are_counted_in_one_note(half_size_ladder, model, capsys):
  out = half_size_ladder["out"]
  half, full = (str(out / half_size_ladder[rung]["path"]) for rung in ("half", "full"))
  status, table, err = score(capsys, half, full)
  assert status == 0
  notes = [line for line in err.splitlines() if "note:" in line]
  assert notes == [
      "jaxvqa score: note: 1 of 2 files have a short side below the model's 32 px input and "
      "were upscaled by its own resize; lower-resolution rungs of a ladder score as the model "
      "was trained with --display-size WxH, the size of the ladder's top rung"
  ]
  assert "decoded:     each file at its own size (no --display-size)\n" in table
  status, table, err = score(capsys, "--display-size", "64x48", half, full)
  assert status == 0 and "note:" not in err
  assert "decoded:     every file at 64x48 (--display-size 64x48)\n" in table

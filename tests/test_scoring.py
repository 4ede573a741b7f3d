"""`jaxvqa score`: file discovery, clip sampling, bad files, output formats, determinism."""

from __future__ import annotations

import copy
import csv
import dataclasses
import errno
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import media
from jaxvqa import cli, scoring
from jaxvqa.evaluate import calibration as calibration_lib
from jaxvqa.serve import inference
from jaxvqa.commands import score as score_command
from jaxvqa.scoring import records as score_records
from jaxvqa.data import decode, ffmpeg, manifest, pipeline, video

ODD_NAME = "-lead dash 'quoted' \"clip\" name.mp4"


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
  """Good clips in four container/codec pairs (one in a subdirectory, one with an odd name); bad
  files: truncated, text with a video extension, zero bytes, a codec no decoder knows; and a
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
  unknown_codec = media.make_unknown_codec_clip(root / "unknown.avi")  # AV1 now decodes
  (root / "readme.txt").write_text("not a video and no video extension: skipped")
  bad = {
      truncated: "truncated",
      not_a_video: "not a video",
      empty: "0 bytes",
      unknown_codec: "no video stream decord can decode",
  }
  return {"root": root, "good": good, "bad": list(bad), "reasons": bad}


@pytest.fixture(scope="module")
def trained(trained_workdir):
  return inference.load_trained_model(trained_workdir)


# ----------------------------------------------------------------------------- without a model


def test_clip_options_are_the_evaluation_frame_options(tiny_config):
  # Training, evaluation and scoring share one FrameOptions class and one reading of config.data.
  assert pipeline.FrameOptions is video.FrameOptions
  for sampling in ("resize_crop", "fragments"):
    tiny_config.data.sampling = sampling
    assert dataclasses.asdict(video.FrameOptions.from_data_config(tiny_config.data)) == {
        "num_frames": tiny_config.data.num_frames,
        "size": tiny_config.data.frame_size,
        "mode": sampling,
        "fragment_grid": 8,
        "fragment_align": 1,  # a config without the field: origins anywhere, as before it existed
    }
  tiny_config.data.fragment_align = 16
  assert video.FrameOptions.from_data_config(tiny_config.data).fragment_align == 16


def test_scoring_imports_neither_grain_nor_tfds():
  # Inference machines carry JAX, Orbax, decord and Pillow, not the training input stack.
  blocked = "; ".join(
      f"sys.modules[{name!r}] = None"
      for name in ("grain", "tensorflow_datasets", "tensorflow", "imageio_ffmpeg", "matplotlib")
  )
  code = (
      f"import sys; {blocked}; from jaxvqa import cli, scoring; "
      "from jaxvqa.serve import inference; cli.build_parser()"
  )
  completed = subprocess.run(
      [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
  )
  assert completed.returncode == 0, completed.stderr[-2000:]


def test_segment_bounds_cover_the_video_in_order():
  assert scoring.segment_bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]
  # Fewer frames than segments: every segment still owns a frame.
  assert scoring.segment_bounds(2, 4) == [(0, 1), (0, 1), (1, 2), (1, 2)]


def test_whole_video_clip_is_the_evaluation_clip_and_segments_sample_their_range(clip_dir):
  path = clip_dir["good"][0]  # 16 frames
  for mode, size in (("resize_crop", 32), ("fragments", 32)):
    options = pipeline.FrameOptions(num_frames=4, size=size, mode=mode, fragment_grid=4)
    sampling = scoring.Sampling(clip_length=4, frames=4, segments=2)
    decoded = scoring.decode_video(path, options, sampling=sampling)
    expected = video.load_clip(
        path.read_bytes(), num_frames=4, size=size, mode=mode, fragment_grid=4, train=False
    )
    np.testing.assert_array_equal(decoded.clips[0], expected)
  assert decoded.clips.shape == (3, 4, 32, 32, 3)
  assert decoded.segments == ((0, 8), (8, 16))
  # Segment 2 = frames 8..15, sampled at its centres 9, 11, 13, 15.
  frames = decode.read_frames(path, [9, 11, 13, 15])
  np.testing.assert_array_equal(
      decoded.clips[2], video.extract_fragments(frames, grid=4, patch=8, rng=None)
  )


def test_display_size_decodes_every_clip_and_segment_as_the_training_frames(half_size_ladder):
  # The frames each score reads are those without the option; only their decoding changes.
  out, half = half_size_ladder["out"], half_size_ladder["half"]
  options = pipeline.FrameOptions(num_frames=2, size=32)
  sampling = scoring.Sampling(clip_length=2, frames=4, segments=3)
  path = out / half["path"]
  decoded = scoring.decode_video(path, options, sampling=sampling, display_size=(64, 48))
  as_is = scoring.decode_video(path, options, sampling=sampling)
  assert decoded.decoded_size == (64, 48) and as_is.decoded_size == (32, 24)
  assert (decoded.frame_indices, decoded.segments) == (as_is.frame_indices, as_is.segments)
  clips = [*sampling.whole_video_clips(8), *(sampling.segment_clip(*s) for s in decoded.segments)]
  assert decoded.clips.shape == (5, 2, 32, 32, 3) and len(clips) == 5
  for clip, indices in zip(decoded.clips, clips):
    np.testing.assert_array_equal(
        clip, options.prepare(manifest.read_display_frames(half, out, indices))
    )


def test_find_videos_walks_directories_expands_globs_and_reports_missing(clip_dir, tmp_path):
  root = clip_dir["root"]
  found, failures = scoring.find_videos([str(root)])
  names = sorted(p.rsplit("/", 1)[-1] for p in found)
  assert names == sorted(
      [
          ODD_NAME,
          "unknown.avi",
          "empty.mov",
          "h264.mp4",
          "matroska.mkv",
          "mpeg4.avi",
          "notes.mkv",
          "truncated.mp4",
          "vp9.webm",
      ]
  )
  assert failures == []
  # A literal name with glob characters, a pattern, a repeat, a missing file and a dead pattern.
  literal = media.make_clip(tmp_path / "take[1].mp4", frames=4)
  found, failures = scoring.find_videos(
      [
          str(literal),
          str(root / "**" / "*.webm"),
          str(root / "h264.mp4"),
          str(root / "h264.mp4"),
          str(tmp_path / "missing.mp4"),
          str(tmp_path / "*.mov"),
      ]
  )
  assert found == [str(literal), str(root / "nested" / "vp9.webm"), str(root / "h264.mp4")]
  assert [(f.path.rsplit("/", 1)[-1], f.reason) for f in failures] == [
      ("missing.mp4", "file not found"),
      ("*.mov", "no file matches this pattern"),
  ]


# ----------------------------------------------------------------------------- with a model


def test_score_directory_reports_bad_files_and_scores_the_rest(
    trained_workdir, clip_dir, tmp_path, capsys
):
  out = tmp_path / "scores.csv"
  status = cli.main(
      [
          "score",
          "--workdir",
          str(trained_workdir),
          "--segments",
          "2",
          "--format",
          "csv",
          "--output",
          str(out),
          "--workers",
          "2",
          str(clip_dir["root"]),
      ]
  )
  stderr = capsys.readouterr().err
  assert status == score_command.EXIT_SOME_FAILED
  for bad, reason in clip_dir["reasons"].items():
    line = next(line for line in stderr.splitlines() if line.startswith(f"jaxvqa score: {bad}: "))
    assert reason in line, line
  assert "readme.txt" not in stderr
  rows = {row["path"]: row for row in csv.DictReader(io.StringIO(out.read_text()))}
  assert sorted(rows) == sorted(str(p) for p in clip_dir["good"] + clip_dir["bad"])
  for path in clip_dir["good"]:
    row = rows[str(path)]
    assert row["error"] == ""
    assert all(
        math.isfinite(float(row[key])) for key in ("score", "raw_score", "segment_1", "segment_2")
    )
    assert row["step"] == "2" and row["checkpoint"].endswith("best/2")
    assert "SwinV2 embed_dim=8" in row["model"]
  for path in clip_dir["bad"]:
    assert rows[str(path)]["score"] == "" and rows[str(path)]["error"]


def test_odd_file_name_after_double_dash_and_json_output(trained_workdir, clip_dir, capsys):
  odd = str(clip_dir["root"] / ODD_NAME)
  status = cli.main(
      ["score", "--workdir", str(trained_workdir), "--format", "json", "--no-progress", "--", odd]
  )
  captured = capsys.readouterr()
  assert status == score_command.EXIT_OK, captured.err
  document = json.loads(captured.out)
  assert [video["path"] for video in document["videos"]] == [odd]
  assert document["failures"] == []
  assert document["checkpoint"]["step"] == 2 and document["checkpoint"]["which"] == "best"
  assert document["model_config"]["backbone"]["embed_dim"] == 8
  calibration = calibration_lib.from_saved(document["calibration"])
  video_score = document["videos"][0]
  assert video_score["score"] == pytest.approx(float(calibration([video_score["raw_score"]])[0]))


def test_table_output_latest_raw_weights_and_usage_errors(
    trained_workdir, clip_dir, tmp_path, capsys
):
  clip = str(clip_dir["good"][1])
  assert cli.main(["score", "--workdir", str(trained_workdir), "--no-progress", clip]) == 0
  table = capsys.readouterr().out
  assert "(step 2, best, ema weights)" in table and "label scale (calibration:" in table
  assert table.splitlines()[-1].endswith(clip)
  # A periodic checkpoint carries no calibration: raw scores, and the output says so.
  assert (
      cli.main(
          [
              "score",
              "--workdir",
              str(trained_workdir),
              "--which",
              "latest",
              "--raw-weights",
              "--format",
              "json",
              "--no-progress",
              clip,
          ]
      )
      == 0
  )
  document = json.loads(capsys.readouterr().out)
  assert document["calibration"] is None and "raw model output" in document["scale"]
  assert document["checkpoint"]["which"] == "latest" and document["checkpoint"]["weights"] == "raw"
  assert document["videos"][0]["score"] == document["videos"][0]["raw_score"]
  # Nothing to score, or no run: usage errors (2), before any model is loaded.
  assert (
      cli.main(["score", "--workdir", str(trained_workdir), str(tmp_path)])
      == score_command.EXIT_USAGE
  )
  assert "no video files to score" in capsys.readouterr().err
  empty_workdir = tmp_path / "not-a-run"
  empty_workdir.mkdir()
  assert cli.main(["score", "--workdir", str(empty_workdir), clip]) == score_command.EXIT_USAGE
  assert "config.json not found" in capsys.readouterr().err


@pytest.mark.slow
def test_scores_are_identical_alone_in_a_batch_and_on_one_or_eight_devices(
    trained_workdir, clip_dir, trained
):
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
  np.testing.assert_array_equal(reference[: len(good)], reference[len(good) : 2 * len(good)])


# ----------------------------------------------------------------------------- output, resume
# These commands use the module's loaded model (`scored_by`), so none reloads or recompiles it.

NOT_UTF8_NAME = os.fsdecode(b"clip\xff.mp4")


def make_vfr_clip(path):
  """12 frames whose timestamps are not evenly spaced: six shown 0.48 s each, then six of 0.08 s
  (pts in 1/25 s ticks: 0, 12, ..., 60, then 72, 74, ..., 82)."""
  timestamps = r"setpts=if(lt(N\,6)\,N*12\,72+(N-6)*2)"
  ffmpeg.run_ffmpeg(
      [
          "-v",
          "error",
          "-i",
          media.shipped_video(),
          "-map",
          "0:v:0",
          "-an",
          "-vf",
          f"scale=64:48,setsar=1,settb=1/25,{timestamps}",
          "-frames:v",
          "12",
          "-fps_mode",
          "vfr",
          "-c:v",
          "libx264",
          "-pix_fmt",
          "yuv420p",
          path,
      ]
  )
  return path


def ffmpeg_frame_times(path):
  """(start seconds of each frame, end of the last) by ffmpeg's framecrc, independent of decord."""
  text = ffmpeg.run_ffmpeg(
      ["-v", "error", "-i", path, "-map", "0:v:0", "-f", "framecrc", "-"], capture_stdout=True
  ).stdout.decode()
  numerator, denominator = next(
      line.split(":")[1].strip() for line in text.splitlines() if line.startswith("#tb 0:")
  ).split("/")
  tick = int(numerator) / int(denominator)
  frames = [
      [int(cell) for cell in line.split(",")[1:4]]
      for line in text.splitlines()
      if line and not line.startswith("#")
  ]
  pts = np.array([frame[1] for frame in frames])
  return pts * tick, (pts[-1] + frames[-1][2]) * tick


@pytest.fixture(scope="module")
def odd_clips(tmp_path_factory):
  """Real clips: a plain one, a variable-frame-rate one, and three whose names are hostile to
  outputs (not UTF-8; a carriage return; a spreadsheet formula)."""
  root = tmp_path_factory.mktemp("odd")
  return {
      "plain": str(media.make_clip(root / "plain.mp4", frames=8)),
      "vfr": str(make_vfr_clip(root / "vfr.mp4")),
      "not_utf8": str(
          media.make_clip(os.path.join(str(root), NOT_UTF8_NAME), frames=8, start_frame=30)
      ),
      "carriage_return": str(media.make_clip(root / "two\rlines.mp4", frames=8, start_frame=60)),
      "formula": str(media.make_clip(root / "=HYPERLINK(1).mkv", frames=8, start_frame=90)),
  }


@pytest.fixture
def scored_by(monkeypatch, trained):
  """`jaxvqa score` loads the module's model; returns the number of clips it sent to the model."""
  sent = []
  dispatch = trained.dispatch
  monkeypatch.setattr(inference, "load_trained_model", lambda *args, **kwargs: trained)
  monkeypatch.setattr(
      trained,
      "dispatch",
      lambda clips, per_device_batch: (sent.append(len(clips)), dispatch(clips, per_device_batch))[
          1
      ],
  )
  return sent


def score(*args):
  return cli.main(["score", "--workdir", "loaded-by-scored_by", "--no-progress", *args])


def read_csv(path):
  with open(path, newline="", encoding="utf-8") as file:
    return list(csv.DictReader(file))


def test_output_that_is_an_input_or_unusable_is_refused_before_scoring(
    odd_clips, tmp_path, scored_by, capsys
):
  clip = odd_clips["plain"]
  original = open(clip, "rb").read()
  link = tmp_path / "hard link.mp4"
  os.link(clip, link)
  for output in (clip, str(link)):
    assert score("--format", "csv", "--output", output, clip) == score_command.EXIT_USAGE
    assert "is one of the files to score" in capsys.readouterr().err
  assert open(clip, "rb").read() == original
  # A directory, a path under a file, a missing directory.
  for output, reason in (
      (tmp_path, "is a directory"),
      (f"{clip}/scores.csv", "is not a directory"),
      (tmp_path / "missing" / "s.csv", "does not exist"),
  ):
    assert score("--output", str(output), clip) == score_command.EXIT_USAGE
    assert reason in capsys.readouterr().err
  assert scored_by == []  # all refused before any clip was scored


def test_replaced_output_is_announced_and_a_late_failure_keeps_old_file_and_results(
    odd_clips, tmp_path, scored_by, monkeypatch, capsys
):
  out = tmp_path / "scores.csv"
  out.write_text("yesterday's scores\n")
  assert score("--format", "csv", "--output", str(out), odd_clips["plain"]) == score_command.EXIT_OK
  assert "(replaced the previous file)" in capsys.readouterr().err
  assert [row["path"] for row in read_csv(out)] == [odd_clips["plain"]]
  # Writing the final file fails after scoring: the old file is whole, every score is kept.
  before = out.read_bytes()

  def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(os, "fsync", full_disk)
  status = score("--format", "csv", "--output", str(out), odd_clips["plain"], odd_clips["formula"])
  assert status == score_command.EXIT_USAGE
  assert out.read_bytes() == before
  kept = [json.loads(line) for line in open(f"{out}.partial")]
  assert [row["path"] for row in kept] == [odd_clips["plain"], odd_clips["formula"]]
  assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")] == []
  err = capsys.readouterr().err
  assert f"cannot write {out}: no space left on device; it is unchanged" in err
  assert "2 results are kept in" in err


def test_names_not_utf8_with_newlines_or_formulas_are_written_losslessly_and_safely(
    odd_clips, tmp_path, scored_by, monkeypatch, capsys
):
  names = [odd_clips[key] for key in ("not_utf8", "carriage_return", "formula")]
  out = tmp_path / "scores.csv"
  out.write_text("old\n")
  assert score("--format", "csv", "--output", str(out), *names) == score_command.EXIT_OK
  rows = read_csv(out)
  escaped = os.fsencode(names[0]).decode("utf-8", "backslashreplace")
  assert escaped.endswith("clip\\xff.mp4")
  # The formula name starts with '/' here (absolute); given relatively, it gets the quote.
  assert [row["path"] for row in rows] == [escaped, names[1], names[2]]
  assert all(math.isfinite(float(row["score"])) for row in rows)
  monkeypatch.chdir(os.path.dirname(names[2]))
  assert (
      score(
          "--format",
          "csv",
          "--output",
          str(out),
          os.path.basename(names[2]),
          os.path.basename(names[1]),
      )
      == score_command.EXIT_OK
  )
  assert [row["path"] for row in read_csv(out)] == ["'=HYPERLINK(1).mkv", "two\rlines.mp4"]
  # JSON and the table carry the same escape; nothing reaches stdout that its encoding cannot hold.
  assert score("--format", "json", names[0]) == score_command.EXIT_OK
  assert [video["path"] for video in json.loads(capsys.readouterr().out)["videos"]] == [escaped]
  assert score(names[1]) == score_command.EXIT_OK
  assert capsys.readouterr().out.splitlines()[-1].endswith("two\\rlines.mp4")


def test_unreadable_directories_files_fifos_and_link_loops_are_named_with_their_reason(
    odd_clips, tmp_path, scored_by, monkeypatch, capsys
):
  root = tmp_path / "clips"
  (root / "locked").mkdir(parents=True)
  media.make_clip(root / "locked" / "hidden_by_permissions.mp4", frames=4)
  shutil.copy(odd_clips["plain"], root / "good.mp4")
  shutil.copy(odd_clips["plain"], root / "unreadable.mp4")
  os.mkfifo(root / "pipe.mp4")
  os.symlink("loop.mp4", root / "loop.mp4")
  os.symlink(".", root / "back-to-top")  # a directory link to the directory holding it
  # Tests run as root, whom permissions do not stop: the kernel's answer to another user is
  # given by the two calls that meet it.
  real_scandir, real_open = os.scandir, os.open

  def scandir(path="."):
    if os.fspath(path) == str(root / "locked"):
      raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
    return real_scandir(path)

  def open_file(path, flags, *args, **kwargs):
    if os.fspath(path) == str(root / "unreadable.mp4"):
      raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
    return real_open(path, flags, *args, **kwargs)

  monkeypatch.setattr(os, "scandir", scandir)
  monkeypatch.setattr(os, "open", open_file)
  status = score("--format", "csv", "--output", str(tmp_path / "s.csv"), str(root), "/dev/null")
  err = capsys.readouterr().err
  assert status == score_command.EXIT_SOME_FAILED

  def reason(path):
    prefix = f"jaxvqa score: {path}: "
    return next(line[len(prefix) :] for line in err.splitlines() if line.startswith(prefix))

  assert reason(root / "locked").startswith("directory not searched: permission denied")
  assert reason(root / "back-to-top").startswith("directory not searched: symbolic link loop")
  assert reason(root / "unreadable.mp4").startswith("permission denied")
  assert reason(root / "pipe.mp4") == "a FIFO (named pipe), not a video file (not opened)"
  assert reason(root / "loop.mp4").startswith("symbolic link loop")
  assert reason("/dev/null") == "a character device, not a video file (not opened)"
  rows = {row["path"]: row for row in read_csv(tmp_path / "s.csv")}
  assert rows[str(root / "good.mp4")]["error"] == "" and len(rows) == 7


def test_resume_scores_only_the_files_a_killed_run_left(
    odd_clips, tmp_path, scored_by, monkeypatch, capsys
):
  clips = [odd_clips[key] for key in ("plain", "vfr", "formula")]
  reference = tmp_path / "uninterrupted.csv"
  assert score("--format", "csv", "--output", str(reference), *clips) == score_command.EXIT_OK
  out = tmp_path / "scores.csv"
  partial = f"{out}.partial"
  record = score_records.score_record
  on_disk = []

  def stopped_at_the_third(*args):
    # What a SIGKILL now would leave: the rows on disk, each flushed as it was made.
    on_disk.append(open(partial).read().count("\n"))
    if len(on_disk) == 3:
      raise KeyboardInterrupt
    return record(*args)

  monkeypatch.setattr(score_records, "score_record", stopped_at_the_third)
  assert score("--format", "csv", "--output", str(out), *clips) == score_command.EXIT_INTERRUPTED
  monkeypatch.setattr(score_records, "score_record", record)
  assert on_disk == [0, 1, 2] and not out.exists()
  assert "2 results are kept in" in capsys.readouterr().err
  # Without --resume the kept results are never overwritten.
  assert score("--format", "csv", "--output", str(out), *clips) == score_command.EXIT_USAGE
  assert "add --resume" in capsys.readouterr().err
  del scored_by[:]
  assert score("--format", "csv", "--output", str(out), "--resume", *clips) == score_command.EXIT_OK
  assert "2 of 3 files already scored by this model" in capsys.readouterr().err
  assert scored_by == [1]  # one clip: the file the killed run had not scored
  assert out.read_bytes() == reference.read_bytes() and not os.path.exists(partial)


@pytest.mark.slow
def test_a_run_killed_by_sigkill_resumes_with_the_files_it_had_not_scored(
    trained_workdir, odd_clips, tmp_path, scored_by, capsys
):
  clips = tmp_path / "clips"
  clips.mkdir()
  for number in range(40):  # 5 batches of 8 on one device: rows reach the disk batch by batch
    os.link(odd_clips["plain"], clips / f"{number:02d}.mp4")
  out = tmp_path / "scores.jsonl"
  partial = Path(f"{out}.partial")
  process = subprocess.Popen(
      [
          sys.executable,
          "-m",
          "jaxvqa.cli",
          "score",
          "--workdir",
          str(trained_workdir),
          "--format",
          "jsonl",
          "--output",
          str(out),
          "--devices",
          "1",
          "--workers",
          "1",
          "--no-progress",
          str(clips),
      ],
      stderr=subprocess.DEVNULL,
  )
  deadline = time.monotonic() + 300
  while process.poll() is None and time.monotonic() < deadline:
    if partial.exists() and b"\n" in partial.read_bytes():
      break
    time.sleep(0.002)
  process.kill()
  assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
  scored_before = partial.read_bytes().count(b"\n")  # a row cut short has no newline yet
  assert 0 < scored_before < 40 and not out.exists()
  assert score("--format", "jsonl", "--output", str(out), "--resume", str(clips)) == 0
  assert f"{scored_before} of 40 files already scored by this model" in capsys.readouterr().err
  assert sum(scored_by) == 40 - scored_before
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert [row["path"] for row in rows] == [str(clips / f"{n:02d}.mp4") for n in range(40)]
  assert len({row["raw_score"] for row in rows}) == 1  # one clip, 40 names: one score


def test_resume_refuses_rows_of_another_model(odd_clips, tmp_path, scored_by, capsys):
  out = tmp_path / "scores.jsonl"
  assert (
      score("--format", "jsonl", "--output", str(out), odd_clips["plain"]) == score_command.EXIT_OK
  )
  (row,) = [json.loads(line) for line in out.read_text().splitlines()]
  other = {**row, "model_id": "sha256:0123456789abcdef"}
  Path(f"{out}.partial").write_text(json.dumps(other) + "\n" + '{"path": "cut sh')
  status = score("--format", "jsonl", "--output", str(out), "--resume", odd_clips["plain"])
  err = capsys.readouterr().err
  assert status == score_command.EXIT_USAGE
  assert "holds scores by another model (sha256:0123456789abcdef" in err
  assert row["model_id"] in err  # this run's model, named
  assert scored_by == [1]
  # A second run cannot write the same output while one holds it.
  first = scoring.OutputFile(out, output_format="jsonl", resume=True)
  first.open()
  with pytest.raises(scoring.OutputError, match="being written by another jaxvqa score run"):
    scoring.OutputFile(out, output_format="jsonl", resume=True).open()
  first.close()


def test_every_format_names_the_scale_and_calibration(
    odd_clips, trained, tmp_path, scored_by, monkeypatch, capsys
):
  clip = odd_clips["plain"]
  label_scale = "VMAF (0-100), calibrated on the validation split"
  outputs = {}
  for output_format in scoring.FORMATS:
    outputs[output_format] = tmp_path / f"best.{output_format}"
    assert score("--format", output_format, "--output", str(outputs[output_format]), clip) == 0
  assert read_csv(outputs["csv"])[0]["scale"].startswith(label_scale)
  assert json.loads(outputs["jsonl"].read_text())["scale"].startswith(label_scale)
  assert json.loads(outputs["json"].read_text())["scale"].startswith(label_scale)
  assert f"scores:      {label_scale}" in outputs["table"].read_text()
  # The latest checkpoint has no calibration: its raw scores say so on every row.
  latest = copy.copy(trained)
  latest.__dict__.pop("identity", None)
  latest.calibration = None
  latest.checkpoint = dataclasses.replace(trained.checkpoint, which="latest")
  monkeypatch.setattr(inference, "load_trained_model", lambda *args, **kwargs: latest)
  assert score("--format", "csv", "--which", "latest", clip, odd_clips["vfr"]) == 0
  rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out, newline="")))
  assert [row["scale"][: len("raw model output, uncalibrated")] for row in rows] == [
      "raw model output, uncalibrated"
  ] * 2
  assert all("--which best" in row["scale"] and row["score"] == row["raw_score"] for row in rows)


def test_segment_times_follow_the_stream_timestamps_of_a_variable_rate_clip(
    odd_clips, scored_by, capsys
):
  clip = odd_clips["vfr"]
  starts, end = ffmpeg_frame_times(clip)
  assert len(set(np.round(np.diff(starts), 6))) == 2  # the rate really varies: 0.48 s and 0.08 s
  assert score("--format", "json", "--segments", "2", clip) == score_command.EXIT_OK
  (result,) = json.loads(capsys.readouterr().out)["videos"]
  assert result["num_frames"] == 12
  assert [(s["start_frame"], s["end_frame"]) for s in result["segments"]] == [(0, 6), (6, 12)]
  times = [(s["start_seconds"], s["end_seconds"]) for s in result["segments"]]
  np.testing.assert_allclose(times, [(starts[0], starts[6]), (starts[6], end)], atol=1e-6)
  # Frame ÷ mean rate would put the boundary elsewhere: the test tells the two apart.
  assert abs(6 / result["fps"] - starts[6]) > 0.5


def test_a_damaged_checkpoint_is_one_line_and_exit_2(trained_workdir, odd_clips, tmp_path, capsys):
  damaged = tmp_path / "run"
  shutil.copytree(trained_workdir, damaged)
  (metadata,) = (damaged / "best").glob("*/state/_METADATA")
  metadata.write_bytes(metadata.read_bytes()[:100])
  assert (
      cli.main(["score", "--workdir", str(damaged), odd_clips["plain"]]) == score_command.EXIT_USAGE
  )
  err = capsys.readouterr().err
  assert len(err.splitlines()) == 1 and str(metadata.parent.parent) in err, err

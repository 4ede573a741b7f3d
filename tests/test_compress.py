"""jaxvqa.data.compress / `jaxvqa make-dataset`: ladder, VMAF labels, manifest, resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import media
from jaxvqa import cli
from jaxvqa.data import compress
from jaxvqa.data import ffmpeg
from jaxvqa.data import video

LADDER = "25k,50k,120k"


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("text,kbps", [
    ("200k", 200.0), ("1.5M", 1500.0), ("8000", 8000.0), (" 2m ", 2000.0), ("12.5K", 12.5)])
def test_parse_bitrate(text, kbps):
  assert compress.parse_bitrate_kbps(text) == kbps


def test_parse_ladder_sorts_and_names_bad_values():
  assert compress.parse_ladder("1M,200k,500") == [200.0, 500.0, 1000.0]
  with pytest.raises(ValueError, match="'fast'"):
    compress.parse_ladder("200k,fast,1M")
  with pytest.raises(ValueError, match="'0k'"):
    compress.parse_ladder("0k,1M")
  with pytest.raises(ValueError, match="appears twice"):
    compress.parse_ladder("1M,1000k")
  with pytest.raises(ValueError, match="libx999"):
    compress.parse_codecs("libx264,libx999")
  with pytest.raises(ValueError, match="even"):
    compress.parse_scale("97x75")


def test_cli_rejects_bad_ladder(tmp_path, capsys):
  assert cli.main(["make-dataset", "--sources", str(tmp_path), "--out",
                   str(tmp_path / "out"), "--ladder", "200k,2X"]) == 2
  assert "'2X'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the job


@pytest.fixture(scope="module")
def made(tmp_path_factory):
  """Two real sources + three bad files, made through the CLI (~5 s)."""
  root = tmp_path_factory.mktemp("make")
  sources = root / "sources"
  media.make_clip(sources / "bikes.mp4", source="bikes", size=(96, 64), frames=16)
  media.make_clip(sources / "bunny.mkv", source="bigbuckbunny", size=(128, 72), frames=16,
                  start_frame=60, codec="ffv1")
  media.make_empty_file(sources / "empty.mp4")
  media.make_truncated_copy(sources / "bikes.mp4", sources / "cut.mp4")
  media.make_not_a_video(sources / "notes.mov")
  (sources / "README.txt").write_text("not a source")
  out = root / "out"
  code = cli.main(["make-dataset", "--sources", str(sources), "--out", str(out),
                   "--ladder", LADDER, "--jobs", "2", "--max-frames", "12",
                   "--no-progress"])
  return {"root": root, "sources": sources, "out": out, "code": code,
          "rows": compress.read_manifest(out / "manifest.jsonl")}


def test_bad_sources_reported_by_name_and_good_ones_made(made):
  assert made["code"] == 1
  # The CLI ran in the fixture; rerun just the failures to read their report.
  result = compress.make_dataset(
      [made["sources"] / name for name in ("empty.mp4", "cut.mp4", "notes.mov")],
      made["root"] / "bad_only", [15.0], progress=False)
  reasons = {os.path.basename(f.name): f.reason for f in result.failures}
  assert set(reasons) == {"empty.mp4", "cut.mp4", "notes.mov"}
  assert "0 bytes" in reasons["empty.mp4"]
  assert "truncated" in reasons["cut.mp4"]
  assert "not a video" in reasons["notes.mov"] and "Invalid data" in reasons["notes.mov"]
  assert result.rows == []
  assert {row["source"] for row in made["rows"]} == {"bikes", "bunny"}


def test_manifest_rows_have_exact_keys_and_order(made):
  rows = made["rows"]
  assert len(rows) == 2 * 3
  for row in rows:
    assert tuple(row) == compress.MANIFEST_KEYS
  keys = [(row["source"], row["codec"], row["rung"]) for row in rows]
  assert keys == sorted(keys)
  assert [row["rung"] for row in rows] == [0, 1, 2, 0, 1, 2]
  assert [row["target_kbps"] for row in rows[:3]] == [25.0, 50.0, 120.0]


def test_manifest_matches_files_on_disk(made):
  out = made["out"]
  for row in made["rows"]:
    encode = out / row["path"]
    assert encode.is_file() and row["path"] == (
        f"encodes/{row['source']}/libx264_{row['target_kbps']:g}k.mp4")
    assert row["source_path"] == f"sources/{row['source']}.mkv"
    info = video.probe(encode)
    reference = video.probe(out / row["source_path"])
    assert (info.width, info.height, info.num_frames) == (
        row["width"], row["height"], row["num_frames"]) == (
        reference.width, reference.height, 12)  # --max-frames 12
    assert info.fps == pytest.approx(row["fps"]) == pytest.approx(25.0)
    assert len(row["vmaf_frames"]) == row["num_frames"]
    assert row["vmaf"] == pytest.approx(np.mean(row["vmaf_frames"]), abs=1e-4)
  # No temporary or half-written file is left behind.
  leftovers = [p for p in out.rglob("*") if p.name.startswith(".")]
  assert leftovers == []


def test_mezzanine_is_lossless_copy_of_source(made):
  # qp 0 x264 in yuv420p: the mezzanine's pixels are the source's pixels.
  mezzanine = made["out"] / "sources" / "bikes.mkv"
  got = media.ffmpeg_decode_frames(mezzanine, [0, 11])
  want = media.ffmpeg_decode_frames(made["sources"] / "bikes.mp4", [0, 11])
  np.testing.assert_array_equal(got, want)


def test_vmaf_falls_as_bitrate_falls(made):
  for source in ("bikes", "bunny"):
    rows = [row for row in made["rows"] if row["source"] == source]
    vmaf = [row["vmaf"] for row in rows]
    # Monotone up to 1 VMAF point, and a real spread across the ladder.
    assert all(low <= high + 1.0 for low, high in zip(vmaf, vmaf[1:])), vmaf
    assert vmaf[-1] - vmaf[0] > 10, vmaf
    assert 0 <= min(vmaf) and max(vmaf) <= 100


def test_achieved_bitrates_near_targets(made):
  for row in made["rows"]:
    # Single-pass ABR over 12 frames: the first key frame dominates and x264
    # under- or overshoots, so only a factor-of-two band is promised; the
    # label is VMAF, the rung only groups.
    assert 0.5 * row["target_kbps"] <= row["bitrate_kbps"] <= 2.0 * row["target_kbps"], row
    # Independent check: the file (packets + container) is at least as big.
    file_kbps = (made["out"] / row["path"]).stat().st_size * 8 / 1000 / (
        row["num_frames"] / row["fps"])
    assert row["bitrate_kbps"] <= file_kbps
  for source in ("bikes", "bunny"):
    rates = [row["bitrate_kbps"] for row in made["rows"] if row["source"] == source]
    assert rates == sorted(rates)


@pytest.fixture
def count_ffmpeg(monkeypatch):
  calls = []
  original = ffmpeg.run_ffmpeg

  def counting(args, **kwargs):
    calls.append([str(a) for a in args])
    return original(args, **kwargs)

  monkeypatch.setattr(ffmpeg, "run_ffmpeg", counting)
  return calls


def _good_sources(made):
  return [made["sources"] / "bikes.mp4", made["sources"] / "bunny.mkv"]


def test_rerun_does_no_work(made, count_ffmpeg):
  out = made["out"]
  mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.name != "manifest.jsonl"}
  result = compress.make_dataset(_good_sources(made), out, [25, 50, 120], ["libx264"], 2,
                                 max_frames=12, progress=False)
  assert count_ffmpeg == []
  assert result.failures == [] and result.rows == made["rows"]
  assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes


def test_killed_run_resumes_to_same_manifest(made, count_ffmpeg, tmp_path):
  out = tmp_path / "out"
  shutil.copytree(made["out"], out)
  # What a kill leaves: one encode finished but not recorded, one half-written
  # encode under its temporary name, and no manifest.
  (out / "encodes/bikes/libx264_50k.json").unlink()
  (out / "encodes/bunny/libx264_120k.json").unlink()
  (out / "encodes/bunny/libx264_120k.mp4").rename(out / "encodes/bunny/.libx264_120k.partial.mp4")
  (out / "manifest.jsonl").unlink()
  (out / "encodes/bikes/.libx264_25k.json.k2j4.tmp").write_text("{")  # a cut-off sidecar write
  result = compress.make_dataset(_good_sources(made), out, [25, 50, 120], ["libx264"], 2,
                                 max_frames=12, progress=False)
  assert result.failures == []
  assert [p for p in out.rglob("*") if p.name.startswith(".")] == []
  # Only the two unrecorded encodes are made again (their final passes below).
  redone = sorted(os.path.relpath(args[-1], out) for args in count_ffmpeg
                  if "libx264" in args and args[-1] != "-")
  assert redone == ["encodes/bikes/.libx264_50k.partial.mp4",
                    "encodes/bunny/.libx264_120k.partial.mp4"]
  # Encoding is deterministic (1 thread per job), so the manifest is identical.
  assert compress.read_manifest(out / "manifest.jsonl") == made["rows"]
  assert not (out / "encodes/bunny/.libx264_120k.partial.mp4").exists()


def test_really_killed_run_resumes_to_same_manifest(made, tmp_path):
  out = tmp_path / "out"
  sources = [str(path) for path in _good_sources(made)]
  code = (f"from jaxvqa.data import compress; compress.make_dataset({sources!r}, {str(out)!r}, "
          "[25, 50, 120], ['libx264'], 2, max_frames=12, progress=False)")
  # Own session, so the kill takes the running ffmpeg children too.
  # Its TMPDIR is ours: SIGKILL leaves the pass-log / VMAF scratch dirs behind.
  scratch = tmp_path / "scratch"
  scratch.mkdir()
  process = subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                             env={**os.environ, "TMPDIR": str(scratch)})
  deadline = time.monotonic() + 60
  while (not list(out.glob("encodes/*/*.json")) and process.poll() is None
         and time.monotonic() < deadline):
    time.sleep(0.005)
  os.killpg(process.pid, signal.SIGKILL)
  process.wait()
  finished = list(out.glob("encodes/*/*.json"))
  assert 1 <= len(finished) < 6 and not (out / "manifest.jsonl").exists()
  result = compress.make_dataset(_good_sources(made), out, [25, 50, 120], ["libx264"], 2,
                                 max_frames=12, progress=False)
  assert result.failures == []
  assert compress.read_manifest(out / "manifest.jsonl") == made["rows"]
  assert [p for p in out.rglob("*") if p.name.startswith(".")] == []


def test_changed_recipe_redoes_work(made, count_ffmpeg, tmp_path):
  out = tmp_path / "out"
  shutil.copytree(made["out"], out)
  result = compress.make_dataset(_good_sources(made)[:1], out, [25], ["libx264"], 1,
                                 max_frames=8, progress=False)
  assert result.rows[0]["num_frames"] == 8 and count_ffmpeg  # mezzanine rebuilt


def test_other_codecs(tmp_path):
  source = media.make_clip(tmp_path / "src" / "bikes.mp4", size=(96, 64), frames=10)
  codecs = ["libx265", "libvpx-vp9", "libsvtav1"]
  result = compress.make_dataset([source], tmp_path / "out", [15, 150], codecs, 2,
                                 progress=False)
  assert result.failures == []
  assert [(row["codec"], row["rung"]) for row in result.rows] == [
      (codec, rung) for codec in sorted(codecs) for rung in (0, 1)]
  for low, high in zip(result.rows[::2], result.rows[1::2]):
    assert low["vmaf"] < high["vmaf"] and low["bitrate_kbps"] < high["bitrate_kbps"]
    # Counted by ffmpeg: decord's FFmpeg has no AV1 decoder.
    assert compress._stream_facts(tmp_path / "out" / high["path"])[2] == 10
  assert [row["path"] for row in result.rows if row["codec"] == "libvpx-vp9"] == [
      "encodes/bikes/libvpx-vp9_15k.webm", "encodes/bikes/libvpx-vp9_150k.webm"]
  assert json.loads((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()[0]) == (
      result.rows[0])

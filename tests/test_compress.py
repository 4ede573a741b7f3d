"""jaxvqa.data.compress (+ .ladder, .encoding) / `jaxvqa make-dataset`: ladder, VMAF labels,
manifest, resume."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import media
from jaxvqa import cli
from jaxvqa.data import compress
from jaxvqa.data import encoding
from jaxvqa.data import ffmpeg
from jaxvqa.data import label_tools
from jaxvqa.data import ladder
from jaxvqa.data import manifest
from jaxvqa.data import decode

LADDER = "25k,50k,120k"


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "text,kbps",
    [("200k", 200.0), ("1.5M", 1500.0), ("8000", 8000.0), (" 2m ", 2000.0), ("12.5K", 12.5)],
)
def test_parse_bitrate(text, kbps):
  assert ladder.parse_bitrate_kbps(text) == kbps


def test_parse_ladder_sorts_and_names_bad_values():
  assert ladder.parse_ladder("1M,200k,500") == [200.0, 500.0, 1000.0]
  with pytest.raises(ValueError, match="'fast'"):
    ladder.parse_ladder("200k,fast,1M")
  with pytest.raises(ValueError, match="'0k'"):
    ladder.parse_ladder("0k,1M")
  with pytest.raises(ValueError, match="appears twice"):
    ladder.parse_ladder("1M,1000k")
  with pytest.raises(ValueError, match="libx999"):
    encoding.parse_codecs("libx264,libx999")
  with pytest.raises(ValueError, match="even"):
    ladder.parse_scale("97x75")


def test_cli_rejects_bad_ladder(tmp_path, capsys):
  assert (
      cli.main(
          [
              "make-dataset",
              "--sources",
              str(tmp_path),
              "--out",
              str(tmp_path / "out"),
              "--ladder",
              "200k,2X",
          ]
      )
      == 2
  )
  assert "'2X'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the job


@pytest.fixture(scope="module")
def made(tmp_path_factory):
  """Two real sources + three bad files, made through the CLI (~5 s)."""
  root = tmp_path_factory.mktemp("make")
  sources = root / "sources"
  media.make_clip(sources / "bikes.mp4", source="bikes", size=(96, 64), frames=16)
  media.make_clip(
      sources / "bunny.mkv",
      source="bigbuckbunny",
      size=(128, 72),
      frames=16,
      start_frame=60,
      codec="ffv1",
  )
  media.make_empty_file(sources / "empty.mp4")
  media.make_truncated_copy(sources / "bikes.mp4", sources / "cut.mp4")
  media.make_not_a_video(sources / "notes.mov")
  (sources / "README.txt").write_text("not a source")
  out = root / "out"
  code = cli.main(
      [
          "make-dataset",
          "--sources",
          str(sources),
          "--out",
          str(out),
          "--ladder",
          LADDER,
          "--jobs",
          "2",
          "--max-frames",
          "12",
          "--no-progress",
      ]
  )
  return {
      "root": root,
      "sources": sources,
      "out": out,
      "code": code,
      "rows": manifest.read_manifest(out / "manifest.jsonl"),
  }


def test_bad_sources_reported_by_name_and_good_ones_made(made):
  assert made["code"] == 1
  # The CLI ran in the fixture; rerun just the failures to read their report.
  result = compress.make_dataset(
      [made["sources"] / name for name in ("empty.mp4", "cut.mp4", "notes.mov")],
      made["root"] / "bad_only",
      [15.0],
      progress=False,
  )
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
    assert tuple(row) == manifest.MANIFEST_KEYS
  keys = [(row["source"], row["codec"], row["rung"]) for row in rows]
  assert keys == sorted(keys)
  assert [row["rung"] for row in rows] == [0, 1, 2, 0, 1, 2]
  assert [row["target_kbps"] for row in rows[:3]] == [25.0, 50.0, 120.0]


def test_the_set_records_the_tools_that_measured_its_labels(made):
  # The ship step copies this into model.json: a model trained where no ffmpeg runs (a GPU
  # machine) still names the libvmaf and ffmpeg that made its labels.
  label = label_tools.recorded_label(made["out"])
  # libvmaf names itself by a version or a commit ("86da14d" in imageio-ffmpeg's build).
  assert re.fullmatch(r"VMAF vmaf_v0\.6\.1 \(libvmaf \w[\w.]* in ffmpeg \S+\)", label), label
  assert label == label_tools.vmaf_label_source()
  assert label_tools.recorded_label(made["sources"]) is None  # no record: the caller decides


def test_manifest_matches_files_on_disk(made):
  out = made["out"]
  for row in made["rows"]:
    encode = out / row["path"]
    assert encode.is_file() and row["path"] == (
        f"encodes/{row['source']}/libx264_{row['target_kbps']:g}k.mp4"
    )
    assert row["source_path"] == f"sources/{row['source']}.mkv"
    info = decode.probe(encode)
    reference = decode.probe(out / row["source_path"])
    assert (
        (info.width, info.height, info.num_frames)
        == (row["width"], row["height"], row["num_frames"])
        == (reference.width, reference.height, 12)
    )  # --max-frames 12
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
    # Two-pass VBR (jaxvqa/data/encoding.py) over 12 frames: the first key frame still
    # dominates and x264 under- or overshoots, so only a factor-of-two band is promised;
    # the label is VMAF, the rung only groups.
    assert 0.5 * row["target_kbps"] <= row["bitrate_kbps"] <= 2.0 * row["target_kbps"], row
    # Independent check: the file (packets + container) is at least as big.
    file_kbps = (
        (made["out"] / row["path"]).stat().st_size * 8 / 1000 / (row["num_frames"] / row["fps"])
    )
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
  rewritten = ("manifest.jsonl", label_tools.LABELS_NAME)  # written at the end of every run
  mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.name not in rewritten}
  result = compress.make_dataset(
      _good_sources(made), out, [25, 50, 120], ["libx264"], 2, max_frames=12, progress=False
  )
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
  result = compress.make_dataset(
      _good_sources(made), out, [25, 50, 120], ["libx264"], 2, max_frames=12, progress=False
  )
  assert result.failures == []
  assert [p for p in out.rglob("*") if p.name.startswith(".")] == []
  # Only the two unrecorded encodes are made again (their final passes below).
  redone = sorted(
      os.path.relpath(args[-1], out)
      for args in count_ffmpeg
      if "libx264" in args and args[-1] != "-"
  )
  assert redone == [
      "encodes/bikes/.libx264_50k.partial.mp4",
      "encodes/bunny/.libx264_120k.partial.mp4",
  ]
  # Encoding is deterministic (1 thread per job), so the manifest is identical.
  assert manifest.read_manifest(out / "manifest.jsonl") == made["rows"]
  assert not (out / "encodes/bunny/.libx264_120k.partial.mp4").exists()


def test_really_killed_run_resumes_to_same_manifest(made, tmp_path):
  out = tmp_path / "out"
  sources = [str(path) for path in _good_sources(made)]
  code = (
      f"from jaxvqa.data import compress; compress.make_dataset({sources!r}, {str(out)!r}, "
      "[25, 50, 120], ['libx264'], 2, max_frames=12, progress=False)"
  )
  # Own session, so the kill takes the running ffmpeg children too.
  # Its TMPDIR is ours: SIGKILL leaves the pass-log / VMAF scratch dirs behind.
  scratch = tmp_path / "scratch"
  scratch.mkdir()
  process = subprocess.Popen(
      [sys.executable, "-c", code],
      start_new_session=True,
      env={**os.environ, "TMPDIR": str(scratch)},
  )
  deadline = time.monotonic() + 60
  while (
      not list(out.glob("encodes/*/*.json"))
      and process.poll() is None
      and time.monotonic() < deadline
  ):
    time.sleep(0.005)
  os.killpg(process.pid, signal.SIGKILL)
  process.wait()
  finished = list(out.glob("encodes/*/*.json"))
  assert 1 <= len(finished) < 6 and not (out / "manifest.jsonl").exists()
  result = compress.make_dataset(
      _good_sources(made), out, [25, 50, 120], ["libx264"], 2, max_frames=12, progress=False
  )
  assert result.failures == []
  assert manifest.read_manifest(out / "manifest.jsonl") == made["rows"]
  assert [p for p in out.rglob("*") if p.name.startswith(".")] == []


def test_changed_recipe_redoes_work(made, count_ffmpeg, tmp_path):
  out = tmp_path / "out"
  shutil.copytree(made["out"], out)
  result = compress.make_dataset(
      _good_sources(made)[:1], out, [25], ["libx264"], 1, max_frames=8, progress=False
  )
  assert result.rows[0]["num_frames"] == 8 and count_ffmpeg  # mezzanine rebuilt


def test_other_codecs(tmp_path):
  source = media.make_clip(tmp_path / "src" / "bikes.mp4", size=(96, 64), frames=10)
  codecs = ["libx265", "libvpx-vp9", "libsvtav1"]
  result = compress.make_dataset([source], tmp_path / "out", [15, 150], codecs, 2, progress=False)
  assert result.failures == []
  assert [(row["codec"], row["rung"]) for row in result.rows] == [
      (codec, rung) for codec in sorted(codecs) for rung in (0, 1)
  ]
  for low, high in zip(result.rows[::2], result.rows[1::2]):
    assert low["vmaf"] < high["vmaf"] and low["bitrate_kbps"] < high["bitrate_kbps"]
    # Counted by ffmpeg: decord's FFmpeg has no AV1 decoder.
    assert encoding.stream_facts(tmp_path / "out" / high["path"])[2] == 10
  assert [row["path"] for row in result.rows if row["codec"] == "libvpx-vp9"] == [
      "encodes/bikes/libvpx-vp9_15k.webm",
      "encodes/bikes/libvpx-vp9_150k.webm",
  ]
  assert json.loads((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()[0]) == (
      result.rows[0]
  )


# ----------------------------------------------------------------------------- resolution ladder


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
  """One source (96×64, 10 frames) at scales 0.5 and 1 × two bitrates, through the CLI (~3 s)."""
  root = tmp_path_factory.mktemp("scaled")
  media.make_clip(root / "sources" / "bikes.mp4", size=(96, 64), frames=10)
  out = root / "out"
  code = cli.main(
      [
          "make-dataset",
          "--sources",
          str(root / "sources"),
          "--out",
          str(out),
          "--ladder",
          "30k,150k",
          "--scales",
          "1,0.5",
          "--jobs",
          "2",
          "--no-progress",
      ]
  )
  assert code == 0
  return {"root": root, "out": out, "rows": manifest.read_manifest(out / "manifest.jsonl")}


def test_parse_scales():
  assert ladder.parse_scales("1,0.75,0.5") == [0.5, 0.75, 1.0]
  for bad, message in (
      ("1,1.5", "'1.5'"),
      ("0", "'0'"),
      ("1,half", "'half'"),
      ("0.5,0.50", "twice"),
  ):
    with pytest.raises(ValueError, match=message):
      ladder.parse_scales(bad)
  assert ladder.coded_size(384, 216, 0.75) == (288, 162)
  assert ladder.coded_size(96, 64, 0.5) == (48, 32)
  assert ladder.coded_size(100, 70, 0.3) == (30, 22)  # 21 → even


# An argument vector (declarative), as test_cli_rejects_bad_ladder's.
def test_cli_rejects_bad_scales(tmp_path, capsys):
  assert (
      cli.main(
          [
              "make-dataset",
              "--sources",
              str(tmp_path),
              "--out",
              str(tmp_path / "out"),
              "--scales",
              "1,2",
          ]
      )
      == 2
  )
  assert "bad scale '2' in --scales '1,2': must be in (0, 1]" in capsys.readouterr().err


def test_scaled_ladder_rows(scaled):
  rows = scaled["rows"]
  assert [(row["scale"], row["target_kbps"], row["rung"]) for row in rows] == [
      (0.5, 30.0, 0),
      (0.5, 150.0, 1),
      (1.0, 30.0, 2),
      (1.0, 150.0, 3),
  ]
  for row in rows:
    assert tuple(row) == manifest.MANIFEST_KEYS
    # The coded size, read back from the file by ffmpeg.
    assert (
        media._display_size(scaled["out"] / row["path"])
        == (row["encode_width"], row["encode_height"])
        == ((48, 32) if row["scale"] == 0.5 else (96, 64))
    )
    assert (row["width"], row["height"]) == (96, 64)
    assert row["bits_per_pixel"] == pytest.approx(
        row["bitrate_kbps"] * 1000 / (row["encode_width"] * row["encode_height"] * row["fps"])
    )
    assert len(row["vmaf_frames"]) == row["num_frames"] == 10
  assert [row["path"] for row in rows] == [
      "encodes/bikes/libx264_30k_x0.5.mp4",
      "encodes/bikes/libx264_150k_x0.5.mp4",
      "encodes/bikes/libx264_30k.mp4",
      "encodes/bikes/libx264_150k.mp4",
  ]
  # Half the lines lose detail no bitrate can restore.
  assert rows[1]["vmaf"] < rows[3]["vmaf"]


def test_scaled_vmaf_is_bicubic_upscale_against_mezzanine(scaled):
  row = scaled["rows"][1]
  out = scaled["out"]
  # An independent run of libvmaf on the bicubic upscale the docstring promises; a
  # different upscaler (here lanczos) gives a different score.
  scores = {}
  for flags in ("bicubic", "lanczos"):
    ffmpeg.run_ffmpeg(
        [
            "-v",
            "error",
            "-i",
            out / row["path"],
            "-i",
            out / row["source_path"],
            "-lavfi",
            f"[0:v]scale=96:64:flags={flags},format=yuv420p[d];"
            f"[d][1:v]libvmaf=log_fmt=json:log_path=v.json",
            "-f",
            "null",
            "-",
        ],
        cwd=scaled["root"],
    )
    log = json.loads((scaled["root"] / "v.json").read_text())
    scores[flags] = [frame["metrics"]["vmaf"] for frame in log["frames"]]
  np.testing.assert_allclose(row["vmaf_frames"], scores["bicubic"], atol=1e-4)
  assert np.abs(np.subtract(row["vmaf_frames"], scores["lanczos"])).max() > 1e-3


def test_scales_one_keeps_the_old_rows(scaled, tmp_path):
  # The same source with --scales 1: the scale-1 rows of the two-scale run, renumbered.
  result = compress.make_dataset(
      [scaled["root"] / "sources" / "bikes.mp4"], tmp_path, [30, 150], progress=False, jobs=2
  )
  two_scale = [dict(row, rung=row["rung"] - 2) for row in scaled["rows"][2:]]
  assert result.rows == two_scale
  assert [row["rung"] for row in result.rows] == [0, 1]


def test_read_display_frames(scaled):
  out = scaled["out"]
  full, half = scaled["rows"][3], scaled["rows"][1]
  np.testing.assert_array_equal(
      manifest.read_display_frames(full, out),
      media.ffmpeg_decode_frames(out / full["path"], range(10)),
  )
  np.testing.assert_array_equal(
      manifest.read_display_frames(full, out, [7, 2, 7]),
      media.ffmpeg_decode_frames(out / full["path"], [7, 2, 7]),
  )
  with pytest.raises(IndexError, match=r"\[10\] are outside encodes/bikes/libx264_150k.mp4"):
    manifest.read_display_frames(full, out, [3, 10])
  frames = manifest.read_display_frames(half, out, [0, 9])
  assert frames.shape == (2, 64, 96, 3) and frames.dtype == np.uint8
  coded = media.ffmpeg_decode_frames(out / half["path"], [0, 9])
  assert coded.shape == (2, 32, 48, 3)
  nearest = coded.repeat(2, axis=1).repeat(2, axis=2)
  assert np.abs(frames.astype(int) - nearest).mean() > 1
  # And the bicubic upscale is nearer the mezzanine than a pixel-repeating one.
  reference = media.ffmpeg_decode_frames(out / half["source_path"], [0, 9]).astype(float)
  assert np.mean((frames - reference) ** 2) < np.mean((nearest - reference) ** 2)


def test_summary_line_counts_made_and_skipped(scaled, capsys):
  args = [
      "make-dataset",
      "--sources",
      str(scaled["root"] / "sources"),
      "--out",
      str(scaled["out"]),
      "--ladder",
      "30k,150k",
      "--scales",
      "1,0.5",
      "--jobs",
      "2",
      "--no-progress",
  ]
  assert cli.main(args) == 0
  summary = capsys.readouterr().err.splitlines()[-1]
  assert re.fullmatch(
      r"jaxvqa make-dataset: 1 sources \(0 failed\), encodes: 0 made, 4 "
      r"skipped \(already done\), 0 failed; [\d.]+ s wall, 0.00 encodes/s",
      summary,
  ), summary
  (scaled["out"] / "encodes/bikes/libx264_30k_x0.5.json").unlink()
  assert cli.main(args + ["--jobs", "1"]) == 0
  summary = capsys.readouterr().err.splitlines()[-1]
  made = re.search(r"encodes: 1 made, 3 skipped .* ([\d.]+) s wall, ([\d.]+) encodes/s", summary)
  assert made
  # Both figures are printed to two decimals: the rate must lie within what the
  # rounded wall time allows (a 0.08 s wall means 0.075-0.085 s, 11.8-13.3/s).
  wall, rate = float(made.group(1)), float(made.group(2))
  half_step = 0.005
  assert 1 / (wall + half_step) - half_step <= rate
  assert wall <= half_step or rate <= 1 / (wall - half_step) + half_step


def test_threads_and_pool(tmp_path, monkeypatch):
  # Two cores and jobs left to default: a pool of two; mezzanines and encodes all
  # run on pool threads (nothing on the caller's), one ffmpeg thread each as at
  # least two tasks are pending; the encoders always run single-threaded.
  monkeypatch.setattr(os, "cpu_count", lambda: 2)
  pools, calls = [], []
  pool_class, run_ffmpeg = concurrent.futures.ThreadPoolExecutor, ffmpeg.run_ffmpeg

  def recording_pool(workers, *args, **kwargs):
    pools.append(workers)
    return pool_class(workers, *args, **kwargs)

  def recording_run(args, **kwargs):
    calls.append((threading.current_thread() is threading.main_thread(), list(map(str, args))))
    return run_ffmpeg(args, **kwargs)

  sources = [
      media.make_clip(tmp_path / "src" / f"c{k}.mp4", size=(64, 48), frames=6, start_frame=20 * k)
      for k in range(2)
  ]
  monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", recording_pool)
  monkeypatch.setattr(ffmpeg, "run_ffmpeg", recording_run)
  result = compress.make_dataset(sources, tmp_path / "out", [60, 200], progress=False)
  assert result.failures == [] and result.made == 4 and result.skipped == 0
  assert pools == [2]
  assert [args for on_main, args in calls if on_main] == []
  assert sum("-xerror" in args for _, args in calls) == 2  # the two mezzanines
  thread_args = [
      args[k + 1] for _, args in calls for k, arg in enumerate(args) if arg == "-threads"
  ]
  assert thread_args and set(thread_args) == {"1"}
  # One pending encode on two cores: decoding and VMAF get both, the encoder one.
  (tmp_path / "out/encodes/c0/libx264_60k.json").unlink()
  calls.clear()
  result = compress.make_dataset(sources, tmp_path / "out", [60, 200], progress=False)
  assert (result.made, result.skipped) == (1, 3)
  vmaf = [args for _, args in calls if "-lavfi" in args]
  assert len(vmaf) == 1 and "n_threads=2" in vmaf[0][vmaf[0].index("-lavfi") + 1]
  encoder_threads = [
      args[len(args) - args[::-1].index("-threads")] for _, args in calls if "libx264" in args
  ]
  assert encoder_threads == ["1", "1"]  # both passes


def test_builder_carries_ladder_keys_and_reads_old_manifests(scaled, tmp_path):
  from jaxvqa.data import builders
  from jaxvqa.data.builders import compressed

  builder = builders.prepare(
      "compressed",
      scaled["out"],
      tmp_path / "tfds",
      seed=0,
      train_fraction=1.0,
      validation_fraction=0.0,
      test_fraction=0.0,
  )
  by_name = {row["path"]: row for row in scaled["rows"]}
  seen = 0
  for split in builder.info.splits:
    source = builder.as_data_source(split)
    for k in range(len(source)):
      record = source[k]
      row = by_name[record["name"].decode()]
      assert record["group"] == row["rung"] and record["scale"] == row["scale"]
      assert (record["encode_width"], record["encode_height"]) == (
          row["encode_width"],
          row["encode_height"],
      )
      assert record["bits_per_pixel"] == pytest.approx(row["bits_per_pixel"], rel=1e-6)
      seen += 1
  assert seen == len(scaled["rows"])
  # A manifest written before --scales: read as scale-1 encodes.
  old_keys = compressed.REQUIRED_KEYS
  (tmp_path / "manifest.jsonl").write_text(
      "".join(json.dumps({key: row[key] for key in old_keys}) + "\n" for row in scaled["rows"][2:])
  )
  assert compressed.read_manifest(tmp_path / "manifest.jsonl") == scaled["rows"][2:]


# ----------------------------------------------------------------------------- real-world rates


@pytest.fixture(scope="module")
def any_rate(tmp_path_factory):
  """Sources at 23.976 (ms time base), 26.78 (mp4, timescale 1000), 29.97 and variable fps,
  plus an audio-only file, at two rungs (~4 s)."""
  root = tmp_path_factory.mktemp("rates")
  src = root / "sources"
  media.make_clip(src / "film.mkv", fps="24000/1001", frames=12)
  media.make_clip(
      src / "camera.mp4",
      source="bigbuckbunny",
      fps=26.78,
      frames=24,
      codec_options=["-video_track_timescale", "1000"],
  )
  media.make_clip(src / "carphone.mkv", source="carphone_pristine", frames=8)
  media.make_vfr_clip(src / "phone.mkv", rates=(30.0, 8.0), frames_per_rate=6)
  media.make_audio_only(src / "voice.mp4")
  result = compress.make_dataset(src, root / "out", [50, 200], jobs=2, progress=False)
  return {"src": src, "out": root / "out", "result": result}


def test_sources_really_have_those_rates(any_rate):
  src = any_rate["src"]
  pts, time_base = media.presentation_timestamps(src / "camera.mp4")
  assert time_base == (1, 1000) and set(np.diff(pts)) == {37, 38}  # 26.78 fps in ms
  pts, time_base = media.presentation_timestamps(src / "film.mkv")
  assert time_base == (1, 1000) and set(np.diff(pts)) == {41, 42}  # 23.976 in ms
  pts, _ = media.presentation_timestamps(src / "phone.mkv")
  steps = np.diff(pts)
  assert steps.max() > 3 * steps.min()  # 1/8 s and 1/30 s frames: really variable


def test_only_the_audio_file_fails(any_rate):
  assert [os.path.basename(f.name) for f in any_rate["result"].failures] == ["voice.mp4"]


@pytest.mark.parametrize("name", ["film", "camera", "carphone", "phone"])
def test_any_frame_rate_gets_every_rung(any_rate, name):
  result, out, src = any_rate["result"], any_rate["out"], any_rate["src"]
  source = next(src.glob(f"{name}.*"))
  rows = [row for row in result.rows if row["source"] == name]
  assert [row["rung"] for row in rows] == [0, 1]
  pts, (num, den) = media.presentation_timestamps(source)
  mean_fps = (len(pts) - 1) / ((pts[-1] - pts[0]) * num / den)
  expected_fps = {
      "film": 24000 / 1001,
      "carphone": 30000 / 1001,
      "camera": pytest.approx(26.78, rel=1e-3),
      "phone": pytest.approx(mean_fps, rel=1e-3),
  }[name]
  frames = media.count_decoded_frames(source)
  for row in rows:
    assert row["num_frames"] == frames == len(row["vmaf_frames"])
    assert media.count_decoded_frames(out / row["path"]) == frames
    assert row["fps"] == expected_fps
    assert row["vmaf"] > 40, row  # frame n against frame n: a shifted pairing scores far lower
  assert rows[1]["vmaf"] > rows[0]["vmaf"]
  # Every source frame is one mezzanine frame (lossless), none dropped or repeated ...
  mezzanine = out / "sources" / f"{name}.mkv"
  np.testing.assert_array_equal(
      media.ffmpeg_decode_frames(mezzanine, range(frames)),
      media.ffmpeg_decode_frames(source, range(frames)),
  )
  # ... at a constant rate (Matroska rounds each timestamp to the millisecond).
  pts, _ = media.presentation_timestamps(mezzanine)
  assert np.ptp(np.diff(pts)) <= 1


def test_audio_only_source_says_no_video_stream(any_rate):
  (failure,) = any_rate["result"].failures
  assert failure.name.endswith("voice.mp4")
  assert "no video stream" in failure.reason and "voice.mp4" in failure.reason


def test_encoder_refusal_is_reported_with_its_reason(made, tmp_path):
  # x264 refuses 1 kb/s; ffmpeg then prints thread-shutdown lines the report skips.
  result = compress.make_dataset(
      _good_sources(made)[:1], tmp_path, [1], max_frames=12, progress=False
  )
  (failure,) = result.failures
  assert failure.name == "bikes/libx264_1k"
  assert "requested bitrate is too low" in failure.reason, failure.reason

"""jaxvqa.beam: make-dataset, the compressed set's TFDS builder and scoring as Beam pipelines on
the local runner, each checked against the path that runs without Beam on the same real media."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import shutil

import numpy as np
import pytest

import media
from jaxvqa import cli
from jaxvqa.data import compress
from jaxvqa.data import ffmpeg
from jaxvqa.data import manifest

beam = pytest.importorskip("apache_beam")

from jaxvqa.beam import make_dataset as beam_make_dataset  # noqa: E402
from jaxvqa.beam import runners  # noqa: E402
from jaxvqa.beam import score as beam_score  # noqa: E402

LADDER_KBPS = [1, 25, 120]  # x264 refuses 1 kb/s: one failed encode per source


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
  root = tmp_path_factory.mktemp("beam-sources")
  # Fixture data, as test_compress.py's sources (shorter clips, other bad files).
  media.make_clip(root / "bikes.mp4", source="bikes", size=(96, 64), frames=10)
  media.make_clip(
      root / "bunny.mkv",
      source="bigbuckbunny",
      size=(128, 72),
      frames=10,
      start_frame=60,
      codec="ffv1",
  )
  media.make_empty_file(root / "empty.mp4")
  return root


@pytest.fixture(scope="module")
def made(sources, tmp_path_factory):
  """The same sources made by the thread pool and by the Beam pipeline (2 local workers)."""
  root = tmp_path_factory.mktemp("beam-made")
  pool = compress.make_dataset(sources, root / "pool", LADDER_KBPS, jobs=2, progress=False)
  piped = beam_make_dataset.make_dataset(
      sources, root / "beam", LADDER_KBPS, runner=runners.choose(None, workers=2)
  )
  return {"root": root, "pool": pool, "beam": piped}


def test_pipeline_makes_the_same_rows_and_labels_as_the_thread_pool(made):
  pool, piped = made["pool"], made["beam"]
  assert [row["source"] for row in piped.rows] == ["bikes", "bikes", "bunny", "bunny"]
  # Every field, VMAF labels per frame included, is the same (encoders are single-threaded).
  assert piped.rows == pool.rows
  assert manifest.read_manifest(made["root"] / "beam" / manifest.MANIFEST_NAME) == pool.rows
  for row in piped.rows:
    assert (made["root"] / "beam" / row["path"]).read_bytes() == (
        made["root"] / "pool" / row["path"]
    ).read_bytes()


def test_failures_are_per_element_and_named(sources, made):
  pool, piped = made["pool"], made["beam"]
  assert piped.failures == pool.failures
  reasons = {failure.name: failure.reason for failure in piped.failures}
  assert set(reasons) == {"bikes/libx264_1k", "bunny/libx264_1k", str(sources / "empty.mp4")}
  assert "requested bitrate is too low" in reasons["bunny/libx264_1k"]
  assert reasons[str(sources / "empty.mp4")] == "empty file (0 bytes)"
  counts = lambda r: (r.num_sources, r.made, r.skipped, r.failed_encodes, r.failed_sources)
  assert counts(piped) == counts(pool) == (3, 4, 0, 2, 1)


def test_rerun_skips_finished_elements_and_resumes_the_other_path(
    sources, made, tmp_path, monkeypatch
):
  calls = []
  original = ffmpeg.run_ffmpeg
  monkeypatch.setattr(
      ffmpeg,
      "run_ffmpeg",
      lambda args, **kw: (calls.append([str(a) for a in args]), original(args, **kw))[1],
  )
  out = tmp_path / "out"
  shutil.copytree(made["root"] / "pool", out)  # what the thread pool made ...
  (out / "encodes/bunny/libx264_120k.json").unlink()  # ... less one finished encode
  (out / manifest.MANIFEST_NAME).unlink()
  result = beam_make_dataset.make_dataset(
      sources, out, LADDER_KBPS, runner=runners.choose(None, workers=2)
  )
  assert (result.made, result.skipped, result.failed_encodes) == (1, 3, 2)
  assert result.rows == made["pool"].rows
  encoded = [args[-1] for args in calls if "libx264" in args and args[-1] != "-"]
  # The one unrecorded encode is made again (the failed 1k encodes are tried again too).
  assert sorted(name.rsplit("/", 1)[-1] for name in encoded) == [
      ".libx264_120k.partial.mp4",
      ".libx264_1k.partial.mp4",
      ".libx264_1k.partial.mp4",
  ]


def test_cli_runs_the_pipeline_with_beam_options(sources, made, tmp_path, capsys):
  out = tmp_path / "out"
  shutil.copytree(made["root"] / "beam", out)
  status = cli.main(
      [
          "make-dataset",
          "--sources",
          str(sources),
          "--out",
          str(out),
          "--ladder",
          "1k,25k,120k",
          "--beam",
          "--jobs",
          "2",
          "--no-progress",
          "--",
          "--direct_running_mode=multi_threading",
      ]
  )
  err = capsys.readouterr().err
  assert status == 1
  assert "FAILED bikes/libx264_1k: " in err and "empty.mp4: empty file (0 bytes)" in err
  assert "encodes: 0 made, 4 skipped (already done), 2 failed" in err.splitlines()[-1]
  assert (
      cli.main(
          [
              "make-dataset",
              "--sources",
              str(sources),
              "--out",
              str(out),
              "--",
              "--runner=FlinkRunner",
          ]
      )
      == 2
  )
  assert "without --beam or --runner" in capsys.readouterr().err


def test_builder_generates_the_same_examples_through_beam(made, tmp_path):
  import tensorflow_datasets as tfds
  from jaxvqa.data.builders import compressed

  config = dataclasses.replace(
      compressed.CompressedVideos.BUILDER_CONFIGS[0],
      name="beam_test",
      train_fraction=0.5,
      validation_fraction=0.0,
      test_fraction=0.5,
  )
  local = runners.choose(None, workers=2)
  builders = {}
  for how, extra in (
      ("plain", {}),
      ("beam", {"beam_runner": local.runner, "beam_options": local.options}),
  ):
    builder = compressed.CompressedVideos(
        data_dir=str(tmp_path / how), config=config, file_format="array_record"
    )
    builder.download_and_prepare(
        file_format="array_record",
        download_config=(
            tfds.download.DownloadConfig(manual_dir=str(made["root"] / "beam"), **extra)
        ),
    )
    builders[how] = builder
  assert (
      set(builders["beam"].info.splits) == set(builders["plain"].info.splits) == {"train", "test"}
  )
  for split in builders["plain"].info.splits:
    examples = {}
    for how, builder in builders.items():
      source = builder.as_data_source(split)
      examples[how] = {int(source[k]["id"]): source[k] for k in range(len(source))}
    assert sorted(examples["beam"]) == sorted(examples["plain"]) and examples["plain"]
    for key, example in examples["plain"].items():
      assert examples["beam"][key].keys() == example.keys()
      for name, value in example.items():
        np.testing.assert_array_equal(examples["beam"][key][name], value)


# ----------------------------------------------------------------------------- scoring


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
  root = tmp_path_factory.mktemp("beam-clips")
  return [
      str(media.make_clip(root / "a.mp4", frames=12)),
      str(media.make_clip(root / "b.mkv", frames=9, start_frame=60)),
      str(media.make_not_a_video(root / "notes.mp4")),
      str(root / "missing.mp4"),
  ]


def test_score_pipeline_writes_the_rows_of_jaxvqa_score(trained_workdir, clips, tmp_path, capsys):
  output = io.StringIO()
  with contextlib.redirect_stdout(output):
    status = cli.main(
        ["score", "--workdir", str(trained_workdir), "--format", "jsonl", "--no-progress", *clips]
    )
  assert status == 1
  expected = sorted(
      (json.loads(line) for line in output.getvalue().splitlines()), key=lambda row: row["path"]
  )
  (tmp_path / "list.txt").write_text("\n".join(clips[1:]) + "\n")
  prefix = str(tmp_path / "scores" / "part")
  status = cli.main(
      [
          "score-beam",
          "--workdir",
          str(trained_workdir),
          "--output",
          prefix,
          "--input",
          clips[0],
          "--list",
          str(tmp_path / "list.txt"),
          "--batch-size",
          "2",
          "--num-shards",
          "2",
          "--jobs",
          "2",
      ]
  )
  err = capsys.readouterr().err
  assert status == 1 and "2 scored, 2 could not be" in err and f"{clips[3]}: file not found" in err
  assert len(list((tmp_path / "scores").glob("part-*-of-00002.jsonl"))) == 2
  rows = sorted(beam_score.read_rows(prefix), key=lambda row: row["path"])
  assert [row["path"] for row in rows] == [row["path"] for row in expected]
  for row, reference in zip(rows, expected):
    assert list(row) == list(reference)  # the same fields in the same order
    assert row == reference  # and the same values: scores, errors, provenance
  assert [row["error"] is None for row in rows] == [True, True, False, False]

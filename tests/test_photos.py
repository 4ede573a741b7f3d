"""jaxvqa.data.photos (`jaxvqa fetch-photos`) on a tiny .deb built here; make-corpus --photos."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from jaxvqa import cli
from jaxvqa.data import corpus, photos

pytestmark = pytest.mark.skipif(
    shutil.which("dpkg-deb") is None or shutil.which("dpkg") is None,
    reason="dpkg-deb and dpkg build and unpack the test .deb (Debian's dpkg package)",
)

PACKAGE, VERSION = "jaxvqa-test-photos", "1.0-1"
COPYRIGHT = f"""\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: {PACKAGE}

Files: *
Copyright: 2024, Everyone
License: GPL-2+

Files: test/leaf*.jpg
Copyright: 2020, Ada Photographer
License: CC-BY-4.0
 A licence text that continues
 over several lines.
"""


def _photo_like(seed: int, width: int, height: int) -> Image.Image:
  """Smooth random colour texture: detail at every place, like a photograph."""
  rng = np.random.default_rng(seed)
  noise = rng.uniform(0, 255, (height // 4, width // 4, 3))
  texture = ndimage.zoom(ndimage.gaussian_filter(noise, (2, 2, 0)), (4, 4, 1), order=1)
  texture = (texture - texture.mean()) * 4 + 128
  return Image.fromarray(np.clip(texture, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
  """A .deb holding two photographs, a copy and a smaller size of them, an icon and an SVG."""
  root = tmp_path_factory.mktemp("deb") / PACKAGE
  images = root / "usr" / "share" / "backgrounds" / "test"
  images.mkdir(parents=True)
  _photo_like(0, 1400, 800).save(images / "sky.png")
  shutil.copyfile(images / "sky.png", images / "z-copy-of-sky.png")  # the same bytes
  leaf = _photo_like(1, 1500, 900)
  leaf.save(images / "leaf.jpg", quality=92)
  leaf.resize((1400, 840), Image.Resampling.LANCZOS).save(images / "leaf-1400.jpg", quality=92)
  _photo_like(2, 256, 256).save(images / "icon.png")  # too small
  (images / "logo.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
  doc = root / "usr" / "share" / "doc" / PACKAGE
  doc.mkdir(parents=True)
  (doc / "copyright").write_text(COPYRIGHT)
  (root / "DEBIAN").mkdir()
  (root / "DEBIAN" / "control").write_text(
      f"Package: {PACKAGE}\nVersion: {VERSION}\nArchitecture: all\n"
      "Maintainer: jaxvqa tests <tests@example.org>\nDescription: test photos\n"
  )
  deb = root.parent / f"{PACKAGE}_{VERSION}_all.deb"
  subprocess.run(
      ["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)],
      check=True,
      capture_output=True,
  )
  return deb


@pytest.fixture(scope="module")
def photo_set(deb, tmp_path_factory) -> tuple[Path, list[dict]]:
  out = tmp_path_factory.mktemp("photos")
  code = cli.main(["fetch-photos", "--out", str(out), "--deb", str(deb), "--max-side", "1200"])
  assert code == 0
  return out, photos.read_photo_set(out)


def test_records_say_licence_size_and_hash_of_each_kept_photo(photo_set, deb, tmp_path):
  out, records = photo_set
  by_name = {Path(record["source_path"]).name: record for record in records}
  # Left out: z-copy-of-sky.png (the same bytes as sky.png, which sorts first), leaf-1400.jpg
  # (the same picture, smaller), icon.png (256x256) and logo.svg.
  assert sorted(by_name) == ["leaf.jpg", "sky.png"]
  sky, leaf = by_name["sky.png"], by_name["leaf.jpg"]
  assert (sky["licence"], sky["copyright"]) == ("GPL-2+", "2024, Everyone")
  assert (leaf["licence"], leaf["copyright"]) == ("CC-BY-4.0", "2020, Ada Photographer")
  assert (sky["width"], sky["height"]) == (1200, 686)  # 1400x800 scaled to 1200 on its long side
  assert (leaf["width"], leaf["height"]) == (1200, 720)
  assert (sky["source_width"], sky["source_height"]) == (1400, 800)
  for record in records:
    stored = Path(record["path"])
    assert stored.is_relative_to(out / "images" / PACKAGE) and stored.suffix == ".jpg"
    assert record["sha256"] == hashlib.sha256(stored.read_bytes()).hexdigest()
    with Image.open(stored) as image:
      assert (image.format, image.size) == ("JPEG", (record["width"], record["height"]))
    assert (record["package"], record["version"]) == (PACKAGE, VERSION)
  source = tmp_path / "unpacked"
  subprocess.run(["dpkg", "-x", str(deb), str(source)], check=True)
  assert (
      leaf["source_sha256"]
      == hashlib.sha256((source / leaf["source_path"]).read_bytes()).hexdigest()
  )
  assert (out / "images" / PACKAGE / "copyright").read_text() == COPYRIGHT
  licences = (out / "LICENSES.md").read_text()
  assert f"| {PACKAGE} | {VERSION} | CC-BY-4.0 | 1 |" in licences
  assert f"| {PACKAGE} | {VERSION} | GPL-2+ | 1 |" in licences


def test_a_second_run_keeps_what_is_there(photo_set, deb, capsys):
  out, records = photo_set
  manifest = (out / photos.MANIFEST_NAME).read_text()
  times = {record["path"]: Path(record["path"]).stat().st_mtime_ns for record in records}
  assert cli.main(["fetch-photos", "--out", str(out), "--deb", str(deb), "--max-side", "1200"]) == 0
  assert f"{PACKAGE}: 2 photos already there" in capsys.readouterr().err
  assert (out / photos.MANIFEST_NAME).read_text() == manifest
  assert {path: Path(path).stat().st_mtime_ns for path in times} == times


def test_a_missing_deb_is_one_line_naming_it(tmp_path, capsys):
  missing = tmp_path / "nothing.deb"
  code = cli.main(["fetch-photos", "--out", str(tmp_path / "out"), "--deb", str(missing)])
  assert code == 2
  error = capsys.readouterr().err
  assert error.count("\n") == 1 and f"--deb {missing}: no such file" in error


def test_make_corpus_cuts_one_family_per_photo_with_its_licence(photo_set, tmp_path):
  out, records = photo_set
  size = dict(width=64, height=48, num_frames=4, fps=24)
  rows = corpus.make_corpus(
      tmp_path / "corpus",
      count=4,
      seed=0,
      jobs=1,
      progress=False,
      photo_dirs=[out],
      real_fraction=1.0,
      **size,
  )
  by_family = {f"deb-photo-{r['source_sha256'][:12]}": r for r in records}
  assert [row["kind"] for row in rows] == ["deb-photo"] * 4
  assert {row["family"] for row in rows} == set(by_family)
  for row in rows:
    record = by_family[row["family"]]
    assert row["source"] == record["path"]
    assert row["licence"] == f"{record['licence']} ({record['copyright']})"
    assert row["package"] == f"{PACKAGE} {VERSION}"
    window = row["params"]["window"]
    if window["zoom"] == [1.0, 1.0] and row["params"]["grain"] is None:
      # A native-pixel window is a plain crop of the stored photo.
      (cx, cy), _ = window["centre"]
      with Image.open(record["path"]) as image:
        crop = np.asarray(image.convert("RGB"))[
            round(cy - 24) : round(cy + 24), round(cx - 32) : round(cx + 32)
        ]
      np.testing.assert_array_equal(corpus.render_clip(row)[0], crop)
  # Half of a mixed corpus comes from the photo set, photos first.
  mixed = corpus.plan_corpus(8, seed=0, photo_dirs=[out], real_fraction=0.5, **size)
  assert [row["kind"] == "deb-photo" for row in mixed].count(True) == 4
  assert mixed[0]["kind"] == "deb-photo"

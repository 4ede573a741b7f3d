"""`jaxvqa make-iqa-set`: its distortions, its MS-SSIM labels and the builder that reads the set.

Photos are scikit-image's real photographs, shrunk to about 190 px (MS-SSIM's 5 scales need at
least 161). MS-SSIM is compared with `pytorch-msssim`, an independent implementation.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

from jaxvqa.data import builders, distortions, iqa_set, ms_ssim, pipeline
from jaxvqa.distill import crops

# Sides that are multiples of 16, so every MS-SSIM scale has even sides and pytorch-msssim's
# zero padding of odd sides never comes into play.
PHOTO_SIZE = (192, 176)


def shipped_photo(name: str, size: tuple[int, int] = PHOTO_SIZE) -> np.ndarray:
  (path,) = [path for path in crops.package_photos() if path.name == name]
  with Image.open(path) as opened:
    return np.asarray(opened.convert("RGB").resize(size, Image.Resampling.LANCZOS))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
  return shipped_photo("astronaut.png")


def rms_distance(a: np.ndarray, b: np.ndarray) -> float:
  return float(np.sqrt(np.mean((a.astype(np.float64) - b) ** 2)))


@pytest.mark.parametrize("name", list(distortions.DISTORTIONS))
def test_distortion_is_deterministic_keeps_shape_and_worsens_with_the_level(photo, name):
  distortion = distortions.DISTORTIONS[name]
  images = [
      distortion.apply(photo, strength, np.random.default_rng(3))
      for strength in distortion.strengths(5)
  ]
  for image in images:
    assert image.shape == photo.shape and image.dtype == np.uint8
  scores = [ms_ssim.ms_ssim(photo, image) for image in images]
  distances = [rms_distance(photo, image) for image in images]
  assert scores[0] < 1.0 and distances[0] > 0.0
  assert np.all(np.diff(scores) < 0), f"MS-SSIM by level: {scores}"
  assert np.all(np.diff(distances) > 0), f"RMS distance by level: {distances}"
  again = distortion.apply(photo, distortion.strengths(5)[2], np.random.default_rng(3))
  np.testing.assert_array_equal(again, images[2])


def test_strengths_are_strictly_ordered_and_refuse_repeats():
  for distortion in distortions.DISTORTIONS.values():
    steps = np.diff(distortion.strengths(5)) * np.sign(distortion.harshest - distortion.mildest)
    assert np.all(steps > 0), distortion.name
  assert distortions.DISTORTIONS["jpeg"].strengths(2) == [50.0, 3.0]
  with pytest.raises(ValueError, match="pixelate: 30 levels"):
    distortions.DISTORTIONS["pixelate"].strengths(30)


def test_ms_ssim_is_one_on_identical_images_and_matches_pytorch_msssim(photo):
  torch = pytest.importorskip("torch")
  pytorch_msssim = pytest.importorskip("pytorch_msssim")
  assert ms_ssim.ms_ssim(photo, photo) == pytest.approx(1.0, abs=1e-12)
  rng = np.random.default_rng(0)
  pairs = [
      distortions.white_noise(photo, 20.0, rng),
      distortions.gaussian_blur(photo, 2.0, rng),
      distortions.jpeg(photo, 10, rng),
      distortions.darken(photo, 2.0, rng),
      distortions.contrast_decrease(photo, 0.1, rng),  # contrast-structure near 0 at some scales
  ]
  for distorted in pairs:
    expected = pytorch_msssim.ms_ssim(
        torch.tensor(photo, dtype=torch.float64).permute(2, 0, 1)[None],
        torch.tensor(distorted, dtype=torch.float64).permute(2, 0, 1)[None],
        data_range=255,
    ).item()
    assert ms_ssim.ms_ssim(photo, distorted) == pytest.approx(expected, abs=1e-4)


def test_ms_ssim_names_what_is_wrong(photo):
  with pytest.raises(ValueError, match="at least 161 pixels"):
    ms_ssim.ms_ssim(photo[:160], photo[:160])
  with pytest.raises(ValueError, match="shapes differ"):
    ms_ssim.ms_ssim(photo, photo[:-1])


def write_photos(directory, names, size=(200, 180)):
  directory.mkdir(parents=True, exist_ok=True)
  for name in names:
    Image.fromarray(shipped_photo(name, size)).save(directory / f"{name.split('.')[0]}.png")


def read_labels(out_dir):
  with open(out_dir / iqa_set.LABELS_NAME, newline="") as file:
    return list(csv.DictReader(file))


def test_make_iqa_set_writes_the_images_and_labels(tmp_path):
  write_photos(tmp_path / "photos", ["astronaut.png", "coffee.png"])
  grey = shipped_photo("camera.png", (200, 180))
  Image.fromarray(grey).save(tmp_path / "photos" / "grey.png")
  out = tmp_path / "set"
  status, _, err = run_cli(
      ["make-iqa-set", "--photos", str(tmp_path / "photos"), "--out", str(out), "--size", "176"]
      + ["--levels", "2", "--distortions", "jpeg,white_noise,lens_blur", "--jobs", "1"]
  )
  assert status == 0, err
  rows = read_labels(out)
  assert list(rows[0]) == list(iqa_set.LABEL_COLUMNS)
  assert len(rows) == 2 * (1 + 3 * 2)
  settings = json.loads((out / iqa_set.SETTINGS_NAME).read_text())
  assert settings["references"] == 2 and settings["images"] == 14
  assert list(settings["skipped"]) == [str(tmp_path / "photos" / "grey.png")]
  references = sorted({row["reference"] for row in rows})
  assert [ref.split("-")[0] for ref in references] == ["references/astronaut", "references/coffee"]
  for reference in references:
    pixels = np.asarray(Image.open(out / reference))
    # 200×180 → short side 176, long side 196 (under 4:3, so not cropped).
    assert pixels.shape == (176, 196, 3)
    own = [row for row in rows if row["reference"] == reference]
    assert [(row["distortion"], row["level"]) for row in own] == [("pristine", "0")] + [
        (name, level) for name in ("jpeg", "white_noise", "lens_blur") for level in ("1", "2")
    ]
    assert float(own[0]["fr_score"]) == 1.0 and own[0]["image"] == reference
    for row in own[1:]:
      distorted = np.asarray(Image.open(out / row["image"]))
      assert distorted.shape == pixels.shape
      assert float(row["fr_score"]) == pytest.approx(ms_ssim.ms_ssim(pixels, distorted), abs=1e-6)
      assert row["mos"] == row["fr_score"]
    for first, second in zip(own[1::2], own[2::2]):
      assert float(second["fr_score"]) < float(first["fr_score"]) < 1.0


def test_make_iqa_set_says_when_no_photo_is_usable(tmp_path):
  status, _, err = run_cli(["make-iqa-set", "--photos", str(tmp_path / "absent"), "--out", "x"])
  assert status == 2 and "no such directory" in err


def test_builder_splits_by_reference_photo_and_reads_the_labels(tmp_path):
  names = ["astronaut.png", "coffee.png", "chelsea.png"]
  write_photos(tmp_path / "photos", names)
  out = tmp_path / "set"
  settings = iqa_set.Settings(size=176, levels=2, distortions=("jpeg",))
  photo_paths = iqa_set.find_photos([tmp_path / "photos"], with_package_photos=False)
  iqa_set.make_iqa_set(photo_paths, out, settings, jobs=1, progress=False)
  rows = {row["image"]: row for row in read_labels(out)}
  mos = np.array([float(row["mos"]) for row in rows.values()])
  builder = builders.prepare(
      "distorted_photos",
      out,
      tmp_path / "tfds",
      train_fraction=0.34,
      validation_fraction=0.33,
      test_fraction=0.33,
  )
  references_of_split = {}
  for split in ("train", "validation", "test"):
    source = builder.as_data_source(split)
    records = [source[i] for i in range(len(source))]
    assert len(records) == 3  # one reference and its two JPEG levels
    references_of_split[split] = {pipeline.text(record["source"]) for record in records}
    for record in records:
      row = rows[pipeline.text(record["name"])]
      assert pipeline.text(record["source"]) == row["reference"]
      assert record["image"] == (out / row["image"]).read_bytes()
      expected = (float(row["mos"]) - mos.min()) / (mos.max() - mos.min())
      assert record["label"] == pytest.approx(expected, abs=1e-6)
  assert all(len(refs) == 1 for refs in references_of_split.values())
  assert len(set.union(*references_of_split.values())) == 3

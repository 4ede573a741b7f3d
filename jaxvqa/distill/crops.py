"""The crop bank distillation trains on: native-resolution crops of real photographs and of decoded
(compressed) corpus frames, uint8, held whole in memory and on the accelerator.

Why native resolution: the quality model reads native pixels (docs/METHOD.md), so the student must
learn the teacher's response to pixels at the scale codecs leave them. A photograph also gives
crops of itself downscaled by 2, 4, 8 (a clean downscale of a pristine photo is itself pristine),
so one photo yields content at several scales. Part of the photo crops are JPEG-compressed at a
random quality, and the corpus frames carry H.264/H.265 artefacts, so the student also learns what
the teacher sees in degraded pixels, which is what the quality model needs.

Held-out images (for the probes) are the share of names with the smallest hash, so the split is the
same in every run and on every machine, and never empty.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import multiprocessing
from pathlib import Path
from typing import Sequence

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
CROPS_FILE = "crops.npy"
CROPS_META = "crops.json"
# The JPEG qualities a compressed photo crop draws from: from heavy blocking to nearly clean.
JPEG_QUALITY_RANGE = (8, 90)


@dataclasses.dataclass(frozen=True)
class CropOptions:
  """How crops are cut (config.data of configs/distill.py holds the values)."""

  size: int  # S: square crops of S × S pixels
  crops_per_scale: int  # crops of each photo at each of its scales
  scales: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125)  # photo downscales (1: native)
  jpeg_fraction: float = 0.5  # share of photo crops JPEG-compressed at a random quality
  crops_per_encode: int = 2  # crops of each decoded corpus encode (one stored frame each)
  held_out_fraction: float = 0.1  # share of images (by name) kept for the probes


@dataclasses.dataclass(frozen=True)
class CropBank:
  """crops[i] came from image names[image[i]]; held_out marks the probes' crops."""

  crops: np.ndarray  # uint8 [N, S, S, 3]
  image: np.ndarray  # int32 [N]
  held_out: np.ndarray  # bool [N]
  names: tuple[str, ...]

  def __len__(self) -> int:
    return len(self.crops)


def held_out_names(names: Sequence[str], fraction: float) -> set[str]:
  """The ⌈fraction · n⌉ names (at least one, never all) whose sha256 is smallest: the same names
  in every run and on every machine for the same set, whatever their order."""
  unique = sorted(set(names), key=lambda name: hashlib.sha256(name.encode()).hexdigest())
  count = min(max(1, math.ceil(fraction * len(unique))), len(unique) - 1)
  return set(unique[:count])


def list_images(directories: Sequence[str | Path]) -> list[Path]:
  """Every image file under `directories` (recursively), sorted for a reproducible bank."""
  found = []
  for directory in directories:
    directory = Path(directory)
    if not directory.is_dir():
      raise FileNotFoundError(f"{directory} is not a directory of images")
    found += [
        path
        for path in directory.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    ]
  return sorted(found)


def package_photos() -> list[Path]:
  """The photographs scikit-image's wheel ships (the demo's photos; always installed)."""
  from jaxvqa.data import sources

  directory = sources.package_data_dir("skimage", "data")
  names = sources.SKIMAGE_COLOUR_PHOTOS + sources.SKIMAGE_GREY_PHOTOS
  return [directory / name for name in names]


def _jpeg(crop: np.ndarray, quality: int) -> np.ndarray:
  from PIL import Image

  buffer = io.BytesIO()
  Image.fromarray(crop).save(buffer, format="JPEG", quality=int(quality))
  return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def _random_crops(image: np.ndarray, size: int, count: int, rng) -> list[np.ndarray]:
  height, width = image.shape[:2]
  tops = rng.integers(0, height - size + 1, count)
  lefts = rng.integers(0, width - size + 1, count)
  return [image[t : t + size, l : l + size] for t, l in zip(tops, lefts)]


def crops_of_photo(path: Path, options: CropOptions, seed: int) -> np.ndarray:
  """[K, S, S, 3] uint8: `crops_per_scale` crops at each scale the photo is large enough for."""
  from PIL import Image

  rng = np.random.default_rng([seed, int(hashlib.sha256(path.name.encode()).hexdigest()[:8], 16)])
  with Image.open(path) as opened:
    photo = opened.convert("RGB")
  crops = []
  for scale in options.scales:
    width, height = round(photo.width * scale), round(photo.height * scale)
    if min(width, height) < options.size:
      continue
    scaled = photo if scale == 1.0 else photo.resize((width, height), Image.Resampling.LANCZOS)
    crops += _random_crops(np.asarray(scaled), options.size, options.crops_per_scale, rng)
  compress = rng.random(len(crops)) < options.jpeg_fraction
  qualities = rng.integers(*JPEG_QUALITY_RANGE, len(crops), endpoint=True)
  crops = [_jpeg(c, q) if z else c for c, z, q in zip(crops, compress, qualities)]
  return np.stack(crops) if crops else np.zeros((0, options.size, options.size, 3), np.uint8)


def crops_of_frames(frames: np.ndarray, size: int, count: int, rng) -> np.ndarray:
  """[count, S, S, 3] uint8 from one encode's stored frames [F, H, W, 3], each from a random frame.

  No rescaling and no JPEG: corpus frames are already at display size and carry codec artefacts.
  """
  if min(frames.shape[1:3]) < size:
    raise ValueError(f"frames of {frames.shape[2]}×{frames.shape[1]} are smaller than {size} px")
  picks = rng.integers(0, len(frames), count)
  return np.stack([_random_crops(frames[i], size, 1, rng)[0] for i in picks])


def _photo_task(task: tuple[Path, CropOptions, int]) -> np.ndarray:
  return crops_of_photo(*task)


def build_bank(
    photos: Sequence[Path],
    options: CropOptions,
    *,
    decoded=None,
    seed: int = 0,
    jobs: int = 1,
) -> CropBank:
  """The bank of `photos` (one image each) and, if given, a `jaxvqa.data.decoded.DecodedSet`
  (its families are the images: every encode of one parent medium is held out together)."""
  tasks = [(Path(path), options, seed) for path in photos]
  if jobs > 1 and len(tasks) > 1:
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
      per_photo = pool.map(_photo_task, tasks, chunksize=1)
  else:
    per_photo = [_photo_task(task) for task in tasks]
  names = [Path(path).name for path in photos]
  crops = list(per_photo)
  image = [np.full(len(c), i, np.int32) for i, c in enumerate(per_photo)]
  if decoded is not None:
    rng = np.random.default_rng([seed, len(names)])
    offset = len(names)
    names += [f"corpus:{family}" for family in decoded.family_names]
    for row in range(len(decoded)):
      crops.append(
          crops_of_frames(decoded.frames[row], options.size, options.crops_per_encode, rng)
      )
      image.append(np.full(options.crops_per_encode, offset + decoded.family[row], np.int32))
  crops_array = np.concatenate(crops) if crops else np.zeros((0, options.size, options.size, 3))
  image_array = np.concatenate(image) if image else np.zeros(0, np.int32)
  held_names = held_out_names(names, options.held_out_fraction)
  held = np.asarray([name in held_names for name in names], bool)
  if len(crops_array) == 0:
    raise ValueError(
        f"no crops: none of the {len(photos)} images is {options.size} px on its short side"
    )
  return CropBank(
      crops=crops_array.astype(np.uint8),
      image=image_array,
      held_out=held[image_array] if len(names) else np.zeros(0, bool),
      names=tuple(names),
  )


def save_bank(bank: CropBank, directory: Path, options: CropOptions, sources: list[str]) -> None:
  """crops.npy (memory-mappable) and crops.json (names, image index, held-out mask, options and
  the `sources` it was cut from)."""
  directory.mkdir(parents=True, exist_ok=True)
  np.save(directory / CROPS_FILE, bank.crops)
  meta = {
      "names": list(bank.names),
      "image": bank.image.tolist(),
      "held_out": bank.held_out.tolist(),
      "options": dataclasses.asdict(options),
      "sources": sources,
  }
  (directory / CROPS_META).write_text(json.dumps(meta))


def load_bank(directory: Path, options: CropOptions, sources: list[str]) -> CropBank | None:
  """The bank saved in `directory` from these `sources` with these `options`, or None (absent,
  or cut from other images or otherwise)."""
  if not (directory / CROPS_FILE).is_file() or not (directory / CROPS_META).is_file():
    return None
  meta = json.loads((directory / CROPS_META).read_text())
  if meta["options"] != json.loads(json.dumps(dataclasses.asdict(options))):
    return None
  if meta.get("sources") != sources:
    return None
  return CropBank(
      crops=np.load(directory / CROPS_FILE, mmap_mode="r"),
      image=np.asarray(meta["image"], np.int32),
      held_out=np.asarray(meta["held_out"], bool),
      names=tuple(meta["names"]),
  )

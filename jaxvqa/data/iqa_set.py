"""An image-quality set made from our own photographs, KADID-10K's way: `jaxvqa make-iqa-set`.

The paper pre-trains its spatial module on CLIVE, LIVE, KonIQ-10k and KADID-10K, none of which
can be downloaded here. KADID-10K is the one that can be remade: pristine images, each degraded
by every distortion of `jaxvqa.data.distortions` at `levels` graded levels, labelled by what
costs nothing.

Pristine reference: each photo is downscaled (Lanczos, antialiased) so that its short side is
`size` pixels, then its long side is centre-cropped to at most 4:3 (KADID's 512×384 at the
default 384). A clean downscale rather than a native-resolution crop, because downscaling
averages away the sensor noise and the JPEG artefacts the photo already carries (the photo sets
store JPEG), so the reference is cleaner than any crop of the original could be, and it keeps
the whole scene. A photo smaller than `size` is kept at its own size (never upscaled, which
would blur it); one whose short side is under `ms_ssim.MIN_SIDE` is skipped, and so is a
greyscale one (the colour distortions would leave it unchanged).

Labels, in OUT/labels.csv (one row per image, the references included as level 0):

    image       the PNG, relative to OUT (references/ID.png or images/ID/DISTORTION_LEVEL.png)
    reference   references/ID.png: the split unit, so no photo is in two splits
    photo       the photo it was made from
    distortion  a key of `distortions.DISTORTIONS`, or "pristine"
    level       0 (pristine) … levels; within (reference, distortion) the rank of severity
    strength    the distortion's parameter at that level (empty for the reference)
    fr_score    MS-SSIM against the reference (`jaxvqa.data.ms_ssim`), 1.0 for the reference
    mos         the training label on 0–1, higher is better: fr_score

Images are PNG, so the only loss is the intended distortion. OUT/iqa_set.json records the
settings, each distortion's strengths and the photos skipped with the reason. The set is
deterministic given --seed: each (photo, distortion) draws from its own generator, the same
for all its levels.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import hashlib
import io
import json
import multiprocessing
import os
import re
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxvqa.data import distortions, ms_ssim, photos

LABELS_NAME = "labels.csv"
SETTINGS_NAME = "iqa_set.json"
LABEL_COLUMNS = (
    "image",
    "reference",
    "photo",
    "distortion",
    "level",
    "strength",
    "fr_score",
    "mos",
)
PRISTINE = "pristine"
DEFAULT_SIZE = 384
DEFAULT_LEVELS = 5
WIDEST_ASPECT = 4 / 3


class IqaSetError(ValueError):
  """The photos or the settings cannot make a set (no usable photo, unknown distortion, …)."""


@dataclasses.dataclass(frozen=True)
class Settings:
  """What one set is made with; written to OUT/iqa_set.json."""

  size: int = DEFAULT_SIZE
  levels: int = DEFAULT_LEVELS
  seed: int = 0
  distortions: tuple[str, ...] = tuple(distortions.DISTORTIONS)


def find_photos(photo_dirs: Sequence[Path], with_package_photos: bool) -> list[Path]:
  """The photos of each directory, then scikit-image's when asked; each file once.

  A directory with a photos.jsonl (from `jaxvqa fetch-photos`) gives the photos it lists; any
  other directory gives its JPEG, PNG and WebP files, searched recursively, in name order.
  """
  found: list[Path] = []
  for directory in photo_dirs:
    directory = Path(directory)
    if (directory / photos.MANIFEST_NAME).is_file():
      found += [Path(record["path"]) for record in photos.read_photo_set(directory)]
    elif directory.is_dir():
      found += sorted(
          path for path in directory.rglob("*") if path.suffix.lower() in photos.PHOTO_SUFFIXES
      )
    else:
      raise IqaSetError(f"--photos {directory}: no such directory")
  if with_package_photos:
    from jaxvqa.distill import crops

    found += crops.package_photos()
  return list(dict.fromkeys(path.absolute() for path in found))


def reference_id(path: Path, data: bytes) -> str:
  """A file-name-safe id: the photo's name and 8 hex digits of its bytes' SHA-1.

  Wallpapers are often called by their resolution ("2560x1600.jpg"); the folder above then
  names them.
  """
  name = path.stem
  if re.fullmatch(r"\d+x\d+", name):
    folders = [part for part in reversed(path.parent.parts) if part not in ("images", "contents")]
    name = folders[0] if folders else name
  slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")[:40] or "photo"
  return f"{slug}-{hashlib.sha1(data).hexdigest()[:8]}"


def pristine_reference(data: bytes, size: int) -> np.ndarray:
  """uint8 [H, W, 3]: short side `size` (or the photo's own when smaller), long side centre-
  cropped to at most 4:3 (see the module docstring). Raises IqaSetError when unusable."""
  from PIL import Image

  with Image.open(io.BytesIO(data)) as opened:
    image = opened.convert("RGB")
  short = min(image.size)
  if short > size:
    scale = size / short
    image = image.resize(
        (round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS
    )
  width, height = image.size
  if min(width, height) < ms_ssim.MIN_SIDE:
    raise IqaSetError(f"{width}×{height} is under {ms_ssim.MIN_SIDE} px on its short side")
  kept_long = min(max(width, height), round(min(width, height) * WIDEST_ASPECT))
  kept_width, kept_height = (kept_long, height) if width >= height else (width, kept_long)
  left, top = (width - kept_width) // 2, (height - kept_height) // 2
  pixels = np.asarray(image.crop((left, top, left + kept_width, top + kept_height)))
  if np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(
      pixels[..., 1], pixels[..., 2]
  ):
    raise IqaSetError("greyscale: the colour distortions would leave it unchanged")
  return pixels


def distortion_rng(seed: int, ref_id: str, distortion: str) -> np.random.Generator:
  """The generator of one (photo, distortion), shared by its levels so they are nested."""
  return np.random.default_rng([seed, zlib.crc32(ref_id.encode()), zlib.crc32(distortion.encode())])


def _save_png(pixels: np.ndarray, path: Path) -> None:
  from PIL import Image

  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(pixels).save(path, format="PNG")


def distorted_versions(reference: np.ndarray, ref_id: str, settings: Settings):
  """Yields (distortion, level 1…levels, strength, uint8 image) for every distortion of
  `settings` at every level, each distortion's levels drawn from one generator (nested)."""
  for name in settings.distortions:
    distortion = distortions.DISTORTIONS[name]
    for level, strength in enumerate(distortion.strengths(settings.levels), start=1):
      rng = distortion_rng(settings.seed, ref_id, name)
      yield name, level, strength, distortion.apply(reference, strength, rng)


def make_photo_images(photo: Path, out_dir: Path, settings: Settings) -> list[dict]:
  """Writes one photo's reference and distorted images under `out_dir`; returns its label rows.

  Raises IqaSetError when the photo cannot be a reference.
  """
  data = photo.read_bytes()
  ref_id = reference_id(photo, data)
  reference = pristine_reference(data, settings.size)
  reference_name = f"references/{ref_id}.png"
  _save_png(reference, out_dir / reference_name)
  row = dict(reference=reference_name, photo=str(photo))
  score = ms_ssim.ReferenceScorer(reference)
  rows = [dict(row, image=reference_name, distortion=PRISTINE, level=0, strength="", fr_score=1.0)]
  for name, level, strength, distorted in distorted_versions(reference, ref_id, settings):
    image_name = f"images/{ref_id}/{name}_{level}.png"
    _save_png(distorted, out_dir / image_name)
    rows.append(
        dict(
            row,
            image=image_name,
            distortion=name,
            level=level,
            strength=strength,
            fr_score=score(distorted),
        )
    )
  return [dict(r, fr_score=round(r["fr_score"], 6), mos=round(r["fr_score"], 6)) for r in rows]


def _make_or_report(photo: str, out_dir: str, settings: Settings) -> tuple[list[dict], str | None]:
  try:
    return make_photo_images(Path(photo), Path(out_dir), settings), None
  except (IqaSetError, OSError) as error:
    return [], str(error)


def _write_labels(path: Path, rows: Sequence[dict]) -> None:
  partial = path.with_name(f".{path.name}.tmp")
  with open(partial, "w", newline="") as file:
    writer = csv.DictWriter(file, fieldnames=LABEL_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
  os.replace(partial, path)


def make_iqa_set(
    photo_paths: Sequence[Path],
    out_dir: Path,
    settings: Settings = Settings(),
    *,
    jobs: int | None = None,
    progress: bool = True,
) -> list[dict]:
  """Makes the set in `out_dir` from `photo_paths` (see the module docstring); returns its rows.

  jobs: worker processes, one photo at a time each (default: all cores; 1 works in-process).
  """
  unknown = sorted(set(settings.distortions) - set(distortions.DISTORTIONS))
  if unknown:
    raise IqaSetError(f"unknown distortions {unknown}; known: {sorted(distortions.DISTORTIONS)}")
  for name in settings.distortions:
    distortions.DISTORTIONS[name].strengths(settings.levels)  # fails early on too many levels
  if not photo_paths:
    raise IqaSetError(
        "no photos: give --photos DIR (a `jaxvqa fetch-photos` set) or --package-photos"
    )
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  started = time.perf_counter()
  jobs = max(1, min(jobs or os.cpu_count() or 1, len(photo_paths)))
  results: dict[str, tuple[list[dict], str | None]] = {}
  if jobs == 1:
    for photo in photo_paths:
      results[str(photo)] = _make_or_report(str(photo), str(out_dir), settings)
      _report(progress, len(results), len(photo_paths), photo, results[str(photo)])
  else:
    # fork where there is one: workers start at once and work from any __main__; they never
    # touch JAX.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
      futures = {
          pool.submit(_make_or_report, str(photo), str(out_dir), settings): photo
          for photo in photo_paths
      }
      for future in concurrent.futures.as_completed(futures):
        photo = futures[future]
        results[str(photo)] = future.result()
        _report(progress, len(results), len(photo_paths), photo, results[str(photo)])
  rows = [row for photo in photo_paths for row in results[str(photo)][0]]
  skipped = {photo: error for photo, (_, error) in results.items() if error is not None}
  if not rows:
    raise IqaSetError(f"none of the {len(photo_paths)} photos could be used: {skipped}")
  _write_labels(out_dir / LABELS_NAME, rows)
  record = dict(
      dataclasses.asdict(settings),
      strengths={
          name: distortions.DISTORTIONS[name].strengths(settings.levels)
          for name in settings.distortions
      },
      references=len({row["reference"] for row in rows}),
      images=len(rows),
      skipped=skipped,
  )
  (out_dir / SETTINGS_NAME).write_text(json.dumps(record, indent=2) + "\n")
  if progress:
    print(
        f"make-iqa-set: {len(rows)} images from {record['references']} photos in {out_dir} "
        f"({len(skipped)} skipped) in {time.perf_counter() - started:.1f} s with {jobs} jobs",
        file=sys.stderr,
    )
  return rows


def _report(progress: bool, done: int, total: int, photo: Path, result) -> None:
  if not progress:
    return
  rows, error = result
  outcome = f"skipped: {error}" if error else f"{len(rows)} images"
  print(f"make-iqa-set [{done}/{total}] {photo.name}: {outcome}", file=sys.stderr)

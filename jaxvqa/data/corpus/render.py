"""One planned clip's frames: windows of real media (with text overlays), generated kinds, grain."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from jaxvqa.data.corpus.drawing import load_font, random_colour, text_line
from jaxvqa.data.corpus.graphics import render_scene, render_text
from jaxvqa.data.corpus.plan import stream_rng
from jaxvqa.data.corpus.textures import render_deadleaves, render_fractal, render_noise


def _ease(progress: np.ndarray, ease: str) -> np.ndarray:
  return progress if ease == "linear" else 0.5 - 0.5 * np.cos(np.pi * progress)


def _window_frames(
    frames: Callable[[int], np.ndarray], window: dict, width: int, height: int, num_frames: int
) -> np.ndarray:
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
      out[t] = medium[top : top + height, left : left + width]
    else:
      image = Image.fromarray(medium)
      out[t] = np.asarray(
          image.transform(
              (width, height),
              Image.Transform.AFFINE,
              (1 / zoom, 0, cx - half_w, 0, 1 / zoom, cy - half_h),
              resample=Image.Resampling.BICUBIC,
          )
      )
  return out


@functools.lru_cache(maxsize=1)  # a worker gets a photograph's clips in one batch
def _load_rgb(path: str) -> np.ndarray:
  from PIL import Image

  with Image.open(path) as image:
    return np.asarray(image.convert("RGB"))


def _render_photo(row: dict, rng: np.random.Generator) -> np.ndarray:
  del rng
  photo = _load_rgb(row["source"])
  return _window_frames(
      lambda t: photo, row["params"]["window"], row["width"], row["height"], row["num_frames"]
  )


def _render_video(row: dict, rng: np.random.Generator) -> np.ndarray:
  del rng
  from jaxvqa.data import decode

  params = row["params"]
  length = params["source_frames"]
  positions = params["start"] + params["stride"] * np.arange(row["num_frames"])
  # Ping-pong past the end: no cut to a different time inside one content.
  period = max(2 * (length - 1), 1)
  positions = positions % period
  indices = np.where(positions < length, positions, period - positions)
  frames = decode.read_frames(row["source"], indices, num_threads=1)
  return _window_frames(
      lambda t: frames[t], params["window"], row["width"], row["height"], row["num_frames"]
  )


def _render_mix(row: dict, rng: np.random.Generator) -> np.ndarray:
  from PIL import Image, ImageDraw

  frames = _render_photo(row, rng)
  overlay = row["params"]["overlay"]
  width, height = row["width"], row["height"]
  size = max(6, int(overlay["font_size"] * height / 216))
  font = load_font(overlay["font"], size)
  lines = [text_line(rng, int(rng.integers(2, 8))) for _ in range(4)]
  colour = random_colour(rng, value=(0.7, 1.0))
  speed = float(rng.uniform(1, 6))
  position = rng.uniform([0, 0], [width * 0.6, height * 0.7])
  for t in range(frames.shape[0]):
    image = Image.fromarray(frames[t]).convert("RGBA")
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    style = overlay["style"]
    if style == "subtitle":
      text = lines[(t * 2) // max(frames.shape[0], 1)]  # the subtitle changes mid-clip
      draw.text(
          (width // 2, height - size // 2 - 2),
          text,
          font=font,
          anchor="md",
          fill=(255, 255, 255, 255),
          stroke_width=max(1, size // 12),
          stroke_fill=(0, 0, 0, 255),
      )
    elif style == "ticker":
      draw.rectangle([0, height - size - 6, width, height], fill=(20, 20, 60, 220))
      draw.text(
          (width - speed * t * 3, height - size - 4),
          "  ".join(lines),
          font=font,
          fill=colour + (255,),
      )
    elif style == "panel":
      x, y = position
      draw.rounded_rectangle(
          [x, y, x + width * 0.4, y + 4 * (size + 4) + 6], radius=6, fill=(0, 0, 0, 140)
      )
      for k, line in enumerate(lines):
        draw.text((x + 6, y + 4 + k * (size + 4)), line, font=font, fill=colour + (255,))
    else:  # watermark: a faint, static logo-like word in a corner
      draw.text((width - 4, 4), lines[0][:12], font=font, anchor="ra", fill=(255, 255, 255, 90))
    frames[t] = np.asarray(Image.alpha_composite(image, layer).convert("RGB"))
  return frames


RENDERERS: dict[str, Callable[[dict, np.random.Generator], np.ndarray]] = {
    "photo": _render_photo,
    "image": _render_photo,
    "deb-photo": _render_photo,
    "video": _render_video,
    "mix": _render_mix,
    "deadleaves": render_deadleaves,
    "noise": render_noise,
    "fractal": render_fractal,
    "text": render_text,
    "scene": render_scene,
}


def add_grain(frames: np.ndarray, grain: dict, rng: np.random.Generator) -> np.ndarray:
  """Fresh Gaussian grain each frame; `size` > 1 makes it coarser (block-upsampled)."""
  t, h, w, _ = frames.shape
  size = grain["size"]
  channels = 3 if grain["colour"] else 1
  small = rng.normal(0, grain["sigma"], size=(t, -(-h // size), -(-w // size), channels))
  noise = np.repeat(np.repeat(small, size, axis=1), size, axis=2)[:, :h, :w]
  return np.clip(frames + noise.astype(np.float32), 0, 255).astype(np.uint8)


def render_clip(row: dict) -> np.ndarray:
  """The frames of one planned clip: uint8 [num_frames, height, width, 3]."""
  rng = stream_rng(row["seed"], row["index"], 1)
  frames = RENDERERS[row["kind"]](row, rng)
  if row["params"].get("grain"):
    frames = add_grain(frames, row["params"]["grain"], stream_rng(row["seed"], row["index"], 2))
  expected = (row["num_frames"], row["height"], row["width"], 3)
  if frames.shape != expected:
    raise RuntimeError(
        f"{row['name']}: renderer {row['kind']!r} made frames "
        f"{frames.shape}, expected {expected}"
    )
  return frames

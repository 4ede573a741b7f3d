"""What the generated renderers share: fonts, pseudo-words, random colours, gradients."""

from __future__ import annotations

import colorsys
import functools
import math
from pathlib import Path

import numpy as np

from jaxvqa.data import sources


@functools.cache
def font_dir() -> Path | None:
  try:
    return sources.package_data_dir("matplotlib", "mpl-data", "fonts", "ttf")
  except FileNotFoundError:  # PIL's built-in font then
    return None


@functools.cache
def load_font(file: str, size: int):
  from PIL import ImageFont

  directory = font_dir()
  if directory is not None and (directory / file).is_file():
    return ImageFont.truetype(str(directory / file), size)
  return ImageFont.load_default(size)


def pseudo_words(rng: np.random.Generator, count: int) -> list[str]:
  """Pronounceable pseudo-words, numbers and punctuation: text without a word list."""
  consonants, vowels = "bcdfghklmnprstvwz", "aeiou"
  words = []
  for _ in range(count):
    roll = rng.random()
    if roll < 0.12:
      words.append(f"{rng.uniform(0, 1000):.{int(rng.integers(0, 3))}f}")
      continue
    word = "".join(
        rng.choice(list(consonants)) + rng.choice(list(vowels))
        for _ in range(int(rng.integers(1, 4)))
    )
    if roll > 0.9:
      word = word.capitalize()
    elif roll > 0.85:
      word = word.upper()
    if rng.random() < 0.1:
      word += str(rng.choice([".", ",", ":", "!", "?"]))
    words.append(word)
  return words


def random_colour(
    rng: np.random.Generator,
    saturation: float | None = None,
    value: tuple[float, float] = (0.1, 1.0),
) -> tuple[int, int, int]:
  sat = rng.uniform(0, 1) if saturation is None else saturation * rng.uniform(0.5, 1)
  red, green, blue = colorsys.hsv_to_rgb(rng.uniform(0, 1), min(sat, 1.0), rng.uniform(*value))
  return int(red * 255), int(green * 255), int(blue * 255)


def gradient_image(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
  """A linear or radial two-colour gradient, float [H, W, 3] in 0..255."""
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  if rng.random() < 0.5:
    angle = rng.uniform(0, 2 * math.pi)
    ramp = xx * math.cos(angle) + yy * math.sin(angle)
  else:
    ramp = np.hypot(xx - rng.uniform(0, width), yy - rng.uniform(0, height))
  ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
  first = np.array(random_colour(rng), np.float32)
  second = np.array(random_colour(rng), np.float32)
  return first + (second - first) * ramp[..., None]


def text_line(rng: np.random.Generator, words: int) -> str:
  return " ".join(pseudo_words(rng, words))


def clip_fields(row: dict) -> tuple[dict, int, int, int]:
  """(params, width, height, num_frames) of a planned clip's row."""
  return row["params"], row["width"], row["height"], row["num_frames"]

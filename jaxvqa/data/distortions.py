"""Synthetic distortions of a photograph at graded strengths, after KADID-10K's recipe.

KADID-10K (Lin, Hosu and Saupe, QoMEX 2019) degrades 81 pristine images by 25 distortion types
at 5 levels each. `DISTORTIONS` is our own set of that kind, written with numpy, scipy, Pillow
and the bundled ffmpeg, for `jaxvqa make-iqa-set` (`jaxvqa.data.iqa_set`):

  blur       gaussian_blur, lens_blur (a disc), motion_blur (a line at a random angle),
             color_diffusion (the chroma planes blurred)
  noise      white_noise, chroma_noise (in Cb/Cr only), correlated_noise (low-passed, grain
             wider than a pixel), impulse_noise (salt and pepper), multiplicative_noise (speckle)
  codecs     jpeg, jpeg2000 (Pillow's OpenJPEG encoder, skipped where Pillow lacks it), webp,
             h264_intra (one frame through libx264 at rising CRF)
  tone       brighten, darken (gamma curves), contrast_decrease, contrast_increase,
             desaturate, oversaturate, quantization (fewer levels per channel)
  geometry   pixelate (block averages), jitter (every pixel displaced), patch_shift
             (KADID's non-eccentricity patches: squares copied from a nearby place),
             chromatic_aberration (red and blue shifted apart)
  other      sharpen (unsharp-mask overshoot), color_block (flat coloured squares)

Every function takes (image uint8 [H, W, 3], strength, rng) and returns uint8 [H, W, 3]. Strength
is in the distortion's own unit (σ in pixels, JPEG quality, CRF, …); `Distortion.strengths`
spreads `levels` values from its mildest to its harshest, evenly on a linear or log scale, and
each level is strictly more severe than the one before. The random numbers a distortion draws do
not depend on its strength (noise fields are drawn once, then scaled; patches are drawn in a
fixed number and the first k used), so given the same generator the levels of one image are
nested: a higher level adds to the lower one's damage, which is what keeps the full-reference
score monotone in the level (tests/test_iqa_set.py checks it for every distortion).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, features
from scipy import ndimage, signal

from jaxvqa.data import ffmpeg

# Draw sizes that do not depend on strength (see the module docstring): the most patches or blocks
# any level uses.
MAX_PATCHES = 512
MAX_BLOCKS = 64


@dataclasses.dataclass(frozen=True)
class Distortion:
  """One distortion type: `apply(image, strength, rng)` and the strengths of its mildest and
  harshest levels (`mildest` may be larger than `harshest`, e.g. JPEG quality)."""

  name: str
  apply: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
  mildest: float
  harshest: float
  log_spaced: bool = False
  integer: bool = False

  def strengths(self, levels: int) -> list[float]:
    """The strength of each level 1..levels; one level is the middle of the range."""
    if levels < 1:
      raise ValueError(f"{self.name}: levels must be at least 1, got {levels}")
    fractions = np.linspace(0.0, 1.0, levels) if levels > 1 else np.array([0.5])
    if self.log_spaced:
      values = np.exp(np.log(self.mildest) + fractions * np.log(self.harshest / self.mildest))
    else:
      values = self.mildest + fractions * (self.harshest - self.mildest)
    # Integer parameters rounded; the others to 4 significant digits, so they read cleanly.
    values = np.round(values) if self.integer else np.array([float(f"{v:.4g}") for v in values])
    if len(np.unique(values)) != levels:
      raise ValueError(
          f"{self.name}: {levels} levels between {self.mildest} and {self.harshest} repeat a "
          "strength once rounded; use fewer levels"
      )
    return [float(value) for value in values]


def _as_uint8(image: np.ndarray) -> np.ndarray:
  return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _to_ycbcr(image: np.ndarray) -> np.ndarray:
  """float [H, W, 3] RGB → YCbCr, BT.601 full range (JPEG's), chroma centred on 128."""
  matrix = np.array(
      [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
  )
  return image @ matrix.T + np.array([0.0, 128.0, 128.0])


def _from_ycbcr(ycbcr: np.ndarray) -> np.ndarray:
  matrix = np.array([[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]])
  return (ycbcr - np.array([0.0, 128.0, 128.0])) @ matrix.T


def _convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
  """Each channel of float [H, W, 3] convolved with a 2-D kernel, borders mirrored."""
  pad_y, pad_x = kernel.shape[0] // 2, kernel.shape[1] // 2
  padded = np.pad(image, ((pad_y, pad_y), (pad_x, pad_x), (0, 0)), mode="symmetric")
  return signal.fftconvolve(padded, kernel[:, :, None], mode="valid", axes=(0, 1))


def _unit_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
  return rng.standard_normal(shape)


# --- blur -----------------------------------------------------------------------------------------


def gaussian_blur(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
  del rng
  return _as_uint8(ndimage.gaussian_filter(image.astype(np.float64), (sigma, sigma, 0)))


def lens_blur(image: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
  """A defocused lens: the image convolved with an anti-aliased disc of `radius` pixels."""
  del rng
  reach = int(np.ceil(radius))
  y, x = np.mgrid[-reach : reach + 1, -reach : reach + 1]
  disc = np.clip(radius + 0.5 - np.hypot(x, y), 0.0, 1.0)
  return _as_uint8(_convolve(image.astype(np.float64), disc / disc.sum()))


def motion_blur(image: np.ndarray, length: float, rng: np.random.Generator) -> np.ndarray:
  """A camera moving in a straight line of `length` pixels at a random angle (one per image)."""
  angle = rng.uniform(0.0, np.pi)
  reach = int(np.ceil(length / 2)) + 1
  kernel = np.zeros((2 * reach + 1, 2 * reach + 1))
  for along in np.linspace(-length / 2, length / 2, 8 * reach + 1):
    x, y = reach + along * np.cos(angle), reach + along * np.sin(angle)
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    fx, fy = x - x0, y - y0
    kernel[y0, x0] += (1 - fx) * (1 - fy)
    kernel[y0, x0 + 1] += fx * (1 - fy)
    kernel[y0 + 1, x0] += (1 - fx) * fy
    kernel[y0 + 1, x0 + 1] += fx * fy
  return _as_uint8(_convolve(image.astype(np.float64), kernel / kernel.sum()))


def color_diffusion(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
  """Colour bleeding across edges: the Cb and Cr planes blurred, luma kept."""
  del rng
  ycbcr = _to_ycbcr(image.astype(np.float64))
  ycbcr[..., 1:] = ndimage.gaussian_filter(ycbcr[..., 1:], (sigma, sigma, 0))
  return _as_uint8(_from_ycbcr(ycbcr))


# --- noise ----------------------------------------------------------------------------------------


def white_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
  return _as_uint8(image + sigma * _unit_noise(rng, image.shape))


def chroma_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
  """White noise in the colour components only (KADID's "white noise in color component")."""
  ycbcr = _to_ycbcr(image.astype(np.float64))
  ycbcr[..., 1:] += sigma * _unit_noise(rng, image.shape[:2] + (2,))
  return _as_uint8(_from_ycbcr(ycbcr))


def correlated_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
  """Spatially coloured (low-passed) noise of standard deviation `sigma`: grain, not hiss."""
  grain = ndimage.gaussian_filter(_unit_noise(rng, image.shape), (1.5, 1.5, 0))
  return _as_uint8(image + sigma * grain / grain.std())


def impulse_noise(image: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
  """A `fraction` of the pixels set to black or white (salt and pepper)."""
  hit = rng.random(image.shape[:2]) < fraction
  white = rng.random(image.shape[:2]) < 0.5
  noisy = image.copy()
  noisy[hit & white] = 255
  noisy[hit & ~white] = 0
  return noisy


def multiplicative_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
  """Speckle: each value scaled by 1 + N(0, sigma²), so bright regions are hit hardest."""
  return _as_uint8(image * (1.0 + sigma * _unit_noise(rng, image.shape)))


# --- codecs ---------------------------------------------------------------------------------------


def _through_pillow(image: np.ndarray, format: str, **options) -> np.ndarray:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format=format, **options)
  with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
    return np.asarray(decoded.convert("RGB"))


def jpeg(image: np.ndarray, quality: float, rng: np.random.Generator) -> np.ndarray:
  del rng
  return _through_pillow(image, "JPEG", quality=int(quality))


def jpeg2000(image: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
  """JPEG 2000 (OpenJPEG through Pillow, the 9/7 wavelet) at a compression ratio of `ratio`:1."""
  del rng
  return _through_pillow(
      image, "JPEG2000", quality_mode="rates", quality_layers=[float(ratio)], irreversible=True
  )


def webp(image: np.ndarray, quality: float, rng: np.random.Generator) -> np.ndarray:
  del rng
  return _through_pillow(image, "WEBP", quality=int(quality), method=4)


def h264_intra(image: np.ndarray, crf: float, rng: np.random.Generator) -> np.ndarray:
  """One frame through libx264 (intra, yuv420p) at constant rate factor `crf`, decoded back.

  An odd side is padded by repeating its edge for the 4:2:0 encode and cropped off afterwards.
  """
  del rng
  height, width = image.shape[:2]
  padded = np.pad(image, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
  with tempfile.TemporaryDirectory(prefix="jaxvqa-h264-") as scratch:
    source, encoded = Path(scratch) / "frame.png", Path(scratch) / "frame.264"
    Image.fromarray(padded).save(source)
    # The scale filter's colour matrix is named both ways so that RGB → YUV → RGB is BT.601
    # full range, the same as the reference's own conversion would be; only the codec distorts.
    ffmpeg.run_ffmpeg(
        ["-i", source, "-vf", "scale=out_color_matrix=bt601:out_range=pc,format=yuv420p"]
        + ["-c:v", "libx264", "-preset", "medium", "-crf", f"{crf:g}", "-frames:v", "1"]
        + ["-x264-params", "log=-1", encoded]
    )
    decoded = ffmpeg.run_ffmpeg(
        ["-i", encoded, "-vf", "scale=in_color_matrix=bt601:in_range=pc"]
        + ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_stdout=True,
    ).stdout
  frame = np.frombuffer(decoded, np.uint8).reshape(padded.shape)
  return np.ascontiguousarray(frame[:height, :width])


# --- tone and colour ------------------------------------------------------------------------------


def brighten(image: np.ndarray, gamma: float, rng: np.random.Generator) -> np.ndarray:
  """A gamma curve 1/gamma: shadows lifted most, white stays white."""
  del rng
  return _as_uint8(255.0 * (image / 255.0) ** (1.0 / gamma))


def darken(image: np.ndarray, gamma: float, rng: np.random.Generator) -> np.ndarray:
  del rng
  return _as_uint8(255.0 * (image / 255.0) ** gamma)


def _scale_contrast(image: np.ndarray, factor: float) -> np.ndarray:
  mean_luma = _to_ycbcr(image.astype(np.float64))[..., 0].mean()
  return _as_uint8(mean_luma + factor * (image - mean_luma))


def contrast_decrease(image: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
  """Values pulled towards the mean luma by `factor` < 1."""
  del rng
  return _scale_contrast(image, factor)


def contrast_increase(image: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
  """Values pushed away from the mean luma by `factor` > 1, clipping highlights and shadows."""
  del rng
  return _scale_contrast(image, factor)


def _scale_chroma(image: np.ndarray, factor: float) -> np.ndarray:
  ycbcr = _to_ycbcr(image.astype(np.float64))
  ycbcr[..., 1:] = 128.0 + factor * (ycbcr[..., 1:] - 128.0)
  return _as_uint8(_from_ycbcr(ycbcr))


def desaturate(image: np.ndarray, removed: float, rng: np.random.Generator) -> np.ndarray:
  """A fraction `removed` of the chroma taken away (1: grey)."""
  del rng
  return _scale_chroma(image, 1.0 - removed)


def oversaturate(image: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
  del rng
  return _scale_chroma(image, factor)


def quantization(image: np.ndarray, steps: float, rng: np.random.Generator) -> np.ndarray:
  """Each channel rounded to `steps` evenly spaced values (posterisation, banding)."""
  del rng
  scale = 255.0 / (steps - 1)
  return _as_uint8(np.round(image / scale) * scale)


# --- geometry -------------------------------------------------------------------------------------


def pixelate(image: np.ndarray, block: float, rng: np.random.Generator) -> np.ndarray:
  """Each `block` × `block` square replaced by its mean (a downscale shown by pixel repetition)."""
  del rng
  block = int(block)
  height, width, channels = image.shape
  padded = np.pad(
      image.astype(np.float64), ((0, -height % block), (0, -width % block), (0, 0)), mode="edge"
  )
  rows, cols = padded.shape[0] // block, padded.shape[1] // block
  means = padded.reshape(rows, block, cols, block, channels).mean(axis=(1, 3))
  blocks = np.repeat(np.repeat(means, block, axis=0), block, axis=1)
  return _as_uint8(blocks[:height, :width])


def jitter(image: np.ndarray, amplitude: float, rng: np.random.Generator) -> np.ndarray:
  """Every pixel fetched from a random nearby place, `amplitude` pixels away on average."""
  height, width = image.shape[:2]
  offsets = _unit_noise(rng, (2, height, width))
  rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
  coordinates = [rows + amplitude * offsets[0], cols + amplitude * offsets[1]]
  return np.stack(
      [
          ndimage.map_coordinates(image[..., c], coordinates, order=1, mode="reflect")
          for c in range(image.shape[2])
      ],
      axis=-1,
  )


def patch_shift(image: np.ndarray, count: float, rng: np.random.Generator) -> np.ndarray:
  """`count` squares of side 1/24 of the short side, each replaced by the square a short random
  distance away (KADID's "non-eccentricity patch")."""
  height, width = image.shape[:2]
  side = max(4, min(height, width) // 24)
  tops = rng.integers(0, height - side + 1, MAX_PATCHES)
  lefts = rng.integers(0, width - side + 1, MAX_PATCHES)
  shifts = rng.integers(side // 2, side + 1, (MAX_PATCHES, 2)) * rng.choice(
      [-1, 1], (MAX_PATCHES, 2)
  )
  shifted = image.copy()
  for top, left, (dy, dx) in list(zip(tops, lefts, shifts))[: int(count)]:
    from_top = int(np.clip(top + dy, 0, height - side))
    from_left = int(np.clip(left + dx, 0, width - side))
    shifted[top : top + side, left : left + side] = image[
        from_top : from_top + side, from_left : from_left + side
    ]
  return shifted


def chromatic_aberration(image: np.ndarray, shift: float, rng: np.random.Generator) -> np.ndarray:
  """Red moved `shift` pixels one way and blue the other, along a random direction."""
  angle = rng.uniform(0.0, 2 * np.pi)
  dy, dx = shift * np.sin(angle), shift * np.cos(angle)
  shifted = image.astype(np.float64)
  shifted[..., 0] = ndimage.shift(shifted[..., 0], (dy, dx), order=1, mode="nearest")
  shifted[..., 2] = ndimage.shift(shifted[..., 2], (-dy, -dx), order=1, mode="nearest")
  return _as_uint8(shifted)


# --- other ----------------------------------------------------------------------------------------


def sharpen(image: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
  """Unsharp masking past the point of taste: halos and clipped edges."""
  del rng
  image = image.astype(np.float64)
  detail = image - ndimage.gaussian_filter(image, (1.5, 1.5, 0))
  return _as_uint8(image + amount * detail)


def color_block(image: np.ndarray, count: float, rng: np.random.Generator) -> np.ndarray:
  """`count` flat squares of random colour, side 1/12 of the short side, at random places."""
  height, width = image.shape[:2]
  side = max(4, min(height, width) // 12)
  tops = rng.integers(0, height - side + 1, MAX_BLOCKS)
  lefts = rng.integers(0, width - side + 1, MAX_BLOCKS)
  colours = rng.integers(0, 256, (MAX_BLOCKS, 3), dtype=np.uint8)
  blocked = image.copy()
  for top, left, colour in list(zip(tops, lefts, colours))[: int(count)]:
    blocked[top : top + side, left : left + side] = colour
  return blocked


@functools.cache
def has_jpeg2000() -> bool:
  """Whether this Pillow was built with OpenJPEG (most wheels are)."""
  return bool(features.check("jpg_2000"))


def _all_distortions() -> dict[str, Distortion]:
  table = [
      Distortion("gaussian_blur", gaussian_blur, 0.6, 6.0, log_spaced=True),
      Distortion("lens_blur", lens_blur, 1.0, 8.0, log_spaced=True),
      Distortion("motion_blur", motion_blur, 3.0, 30.0, log_spaced=True),
      Distortion("color_diffusion", color_diffusion, 1.0, 16.0, log_spaced=True),
      Distortion("white_noise", white_noise, 3.0, 45.0, log_spaced=True),
      Distortion("chroma_noise", chroma_noise, 4.0, 60.0, log_spaced=True),
      Distortion("correlated_noise", correlated_noise, 3.0, 40.0, log_spaced=True),
      Distortion("impulse_noise", impulse_noise, 0.003, 0.1, log_spaced=True),
      Distortion("multiplicative_noise", multiplicative_noise, 0.03, 0.5, log_spaced=True),
      Distortion("jpeg", jpeg, 50, 3, log_spaced=True, integer=True),
      Distortion("jpeg2000", jpeg2000, 20.0, 400.0, log_spaced=True),
      Distortion("webp", webp, 40, 0, integer=True),
      Distortion("h264_intra", h264_intra, 24, 50, integer=True),
      Distortion("brighten", brighten, 1.15, 2.5, log_spaced=True),
      Distortion("darken", darken, 1.15, 2.5, log_spaced=True),
      Distortion("contrast_decrease", contrast_decrease, 0.85, 0.25),
      Distortion("contrast_increase", contrast_increase, 1.2, 2.5, log_spaced=True),
      Distortion("desaturate", desaturate, 0.2, 1.0),
      Distortion("oversaturate", oversaturate, 1.4, 4.0, log_spaced=True),
      Distortion("quantization", quantization, 32, 3, log_spaced=True, integer=True),
      Distortion("pixelate", pixelate, 2, 16, log_spaced=True, integer=True),
      Distortion("jitter", jitter, 0.4, 4.0, log_spaced=True),
      Distortion("patch_shift", patch_shift, 16, 512, log_spaced=True, integer=True),
      Distortion("chromatic_aberration", chromatic_aberration, 1.0, 8.0, log_spaced=True),
      Distortion("sharpen", sharpen, 1.0, 10.0, log_spaced=True),
      Distortion("color_block", color_block, 2, 48, log_spaced=True, integer=True),
  ]
  return {d.name: d for d in table if d.name != "jpeg2000" or has_jpeg2000()}


# Every distortion this Pillow and ffmpeg can make, in the order the set lists them.
DISTORTIONS: dict[str, Distortion] = _all_distortions()

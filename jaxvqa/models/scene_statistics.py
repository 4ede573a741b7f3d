"""Fixed no-reference statistics of native pixels: natural-scene statistics and the block grid.

    frames [N, H, W, 3] in [0, 255] ─▶ luma ─▶ regions of R × R px ─▶ [N, NUM_STATISTICS]

Why fixed statistics beside the learnt detail branch: a score must put different contents at the
right level, and learnt filters trained on a few hundred contents learn the ranking within a
content but not that level (docs/RESULTS.md). Two classic no-reference measures carry it across
contents:

- **The block grid.** Codecs quantise blocks of 4, 8 and 16 px whose grid starts at the frame's
  origin, so a compressed frame changes more across a grid line than beside one. The log ratio of
  the two is about 0 for any uncompressed content, whatever its texture. It needs pixels whose
  position modulo 16 is known: fragments cut at multiples of 16 (`data.fragment_align`).
- **Mean-subtracted contrast-normalised (MSCN) coefficients** (BRISQUE, Mittal et al. 2012):
  dividing out the local mean and contrast leaves coefficients whose spread, tails and
  neighbour products are much the same for any pristine natural content and change with blur and
  blocking. Two scales.

Statistics are taken inside regions of R px (the fragments, or the whole frame), never across a
region's border, where neighbouring fragments of a mosaic meet. With a CPU reference in
tests/test_scene_statistics.py (scipy.ndimage).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

BLOCK_SIZES = (4, 8, 16)
MSCN_SCALES = 2
# Gaussian window of BRISQUE: 7 taps, sigma 7/6.
_TAPS = np.exp(-0.5 * (np.arange(-3, 4) / (7 / 6)) ** 2)
GAUSSIAN_TAPS = _TAPS / _TAPS.sum()
MSCN_STABILISER = 1.0  # C of BRISQUE, for [0, 255] luma
DIFFERENCE_FLOOR = 0.1  # keeps the log ratios finite on flat regions
LUMA = (0.299, 0.587, 0.114)
# Neighbour products of BRISQUE: right, down, down-right, down-left.
NEIGHBOURS = ((0, 1), (1, 0), (1, 1), (1, -1))
STATISTICS_PER_SCALE = 4 + 2 * len(NEIGHBOURS) + 1
NUM_STATISTICS = 2 * len(BLOCK_SIZES) + 2 + MSCN_SCALES * STATISTICS_PER_SCALE


def validate_region(region: int, name: str = "region") -> None:
  """Raises ValueError unless `region` is a multiple of 16 px (the largest block) and at least
  32 px (7-tap windows at two scales)."""
  if region % max(BLOCK_SIZES) or region < 32:
    raise ValueError(f"{name} must be a multiple of 16 px and >= 32, got {region}")


def _regions(luma, region: int):
  """[N, H, W] → [N · (H/R) · (W/R), R, R]."""
  n, h, w = luma.shape
  if h % region or w % region:
    raise ValueError(f"frames of {h}×{w} px do not split into regions of {region} px")
  tiles = luma.reshape(n, h // region, region, w // region, region).transpose(0, 1, 3, 2, 4)
  return tiles.reshape(-1, region, region)


def _block_statistics(regions):
  """[N, k, R, R] → [N, 2·3 + 2]: the log ratio of the mean |difference| across grid lines of
  each block size to that elsewhere, across columns then rows, and the log mean |difference| of
  each direction. Means over all k regions of a frame: one region has few grid lines."""
  out_ratio, out_level = [], []
  for axis in (3, 2):
    difference = jnp.abs(jnp.diff(regions, axis=axis))
    # Difference j lies between pixels j and j + 1: on a grid line of block b when (j + 1) % b == 0.
    position = np.arange(regions.shape[axis] - 1) + 1
    reduce_axes = (1, 2, 3)
    shape = (1, 1, 1, -1) if axis == 3 else (1, 1, -1, 1)
    for block in BLOCK_SIZES:
      on_line = (position % block == 0).astype(np.float32)
      weight = jnp.asarray(on_line.reshape(shape))
      across = (difference * weight).mean(reduce_axes) / on_line.mean()
      beside = (difference * (1 - weight)).mean(reduce_axes) / (1 - on_line).mean()
      out_ratio.append(jnp.log((across + DIFFERENCE_FLOOR) / (beside + DIFFERENCE_FLOOR)))
    out_level.append(jnp.log(difference.mean(reduce_axes) + DIFFERENCE_FLOOR))
  return jnp.stack(out_ratio + out_level, axis=-1)


def _blur_valid(x):
  """Separable 7-tap Gaussian of [K, R, R] over its valid part: [K, R - 6, R - 6]."""
  taps = jnp.asarray(GAUSSIAN_TAPS, x.dtype)
  size = len(GAUSSIAN_TAPS)
  rows = sum(taps[i] * x[:, i : x.shape[1] - size + 1 + i, :] for i in range(size))
  return sum(taps[i] * rows[:, :, i : x.shape[2] - size + 1 + i] for i in range(size))


def _sqrt_with_finite_gradient(variance):
  """sqrt(variance), bit for bit, with gradient 0 where variance is 0 (sqrt's is infinite there).

  A flat window has variance 0, and jnp.maximum passes it a zero gradient: inf × 0 is NaN, which
  reached every pixel of a flat clip through quality_fn. Both branches of the where are kept
  finite, as a where alone does not stop the NaN of the branch it drops.
  """
  positive = variance > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, variance, 1.0)), 0.0)


def _mscn_statistics(regions):
  """[K, R, R] → [K, STATISTICS_PER_SCALE]: spread, mean |x|, log kurtosis and the share near 0
  of the MSCN coefficients, mean and mean |·| of each neighbour product, log mean |Laplacian|."""
  mean = _blur_valid(regions)
  variance = jnp.maximum(_blur_valid(regions * regions) - mean * mean, 0.0)
  centre = regions[:, 3:-3, 3:-3]
  x = (centre - mean) / (_sqrt_with_finite_gradient(variance) + MSCN_STABILISER)
  second = (x * x).mean((1, 2))
  fourth = (x**4).mean((1, 2))
  statistics = [
      second,
      jnp.abs(x).mean((1, 2)),
      jnp.log(fourth / (second * second + 1e-6) + 1e-6),
      (jnp.abs(x) < 0.1).astype(x.dtype).mean((1, 2)),
  ]
  height, width = x.shape[1:]
  for dy, dx in NEIGHBOURS:
    left, right = max(0, -dx), max(0, dx)
    here = x[:, : height - dy, left : width - right]
    there = x[:, dy:, left + dx : width - right + dx]
    product = here * there
    statistics += [product.mean((1, 2)), jnp.abs(product).mean((1, 2))]
  laplacian = (
      regions[:, :-2, 1:-1]
      + regions[:, 2:, 1:-1]
      + regions[:, 1:-1, :-2]
      + regions[:, 1:-1, 2:]
      - 4 * regions[:, 1:-1, 1:-1]
  )
  statistics.append(jnp.log(jnp.abs(laplacian).mean((1, 2)) + DIFFERENCE_FLOOR))
  return jnp.stack(statistics, axis=-1)


def scene_statistics(frames, region: int):
  """[N, H, W, 3] in [0, 255] → float32 [N, NUM_STATISTICS], averaged over the regions of R px.

  H and W must be multiples of `region`, and `region` a multiple of 16 with at least 2 · 7 px
  per MSCN scale (32 px or more).
  """
  validate_region(region, "the scene statistics' region")
  luma = frames.astype(jnp.float32) @ jnp.asarray(LUMA, jnp.float32)
  n = luma.shape[0]
  regions = _regions(luma, region)
  parts = [_block_statistics(regions.reshape(n, -1, region, region))]
  for scale in range(MSCN_SCALES):
    if scale:
      k, r = regions.shape[0], regions.shape[1] // 2
      regions = regions.reshape(k, r, 2, r, 2).mean((2, 4))
    parts.append(_mscn_statistics(regions).reshape(n, -1, STATISTICS_PER_SCALE).mean(axis=1))
  return jnp.concatenate(parts, axis=-1)

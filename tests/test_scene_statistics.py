"""The fixed scene statistics against a scipy/numpy reference, and what they respond to."""

import numpy as np
import pytest
import scipy.ndimage

from jaxvqa.models import scene_statistics as ss


def _reference(frame: np.ndarray, region: int) -> np.ndarray:
  """One frame [H, W, 3] → NUM_STATISTICS, written independently in float64: loops over regions,
  index lists for the grid lines, scipy's correlate1d for the Gaussian window and its laplace."""
  luma = frame.astype(np.float64) @ np.asarray(ss.LUMA)
  tiles = [
      luma[y : y + region, x : x + region]
      for y in range(0, luma.shape[0], region)
      for x in range(0, luma.shape[1], region)
  ]
  block = []
  for axis in (1, 0):
    differences = np.stack([np.abs(np.diff(tile, axis=axis)) for tile in tiles])
    if axis == 0:
      differences = differences.transpose(0, 2, 1)  # grid lines along the last axis
    for size in ss.BLOCK_SIZES:
      lines = [j for j in range(region - 1) if (j + 1) % size == 0]
      others = [j for j in range(region - 1) if (j + 1) % size]
      across = differences[:, :, lines].mean()
      beside = differences[:, :, others].mean()
      block.append(np.log((across + ss.DIFFERENCE_FLOOR) / (beside + ss.DIFFERENCE_FLOOR)))
  levels = [
      np.log(np.mean([np.abs(np.diff(tile, axis=axis)).mean() for tile in tiles]) + 0.1)
      for axis in (1, 0)
  ]
  per_scale = []
  for scale in range(ss.MSCN_SCALES):
    rows = []
    for tile in tiles:
      if scale:
        tile = tile.reshape(region // 2, 2, region // 2, 2).mean((1, 3))
      blur = lambda image: scipy.ndimage.correlate1d(
          scipy.ndimage.correlate1d(image, ss.GAUSSIAN_TAPS, axis=0), ss.GAUSSIAN_TAPS, axis=1
      )[3:-3, 3:-3]
      mean = blur(tile)
      sigma = np.sqrt(np.maximum(blur(tile * tile) - mean**2, 0))
      x = (tile[3:-3, 3:-3] - mean) / (sigma + ss.MSCN_STABILISER)
      flat = x.ravel()
      second, fourth = np.mean(flat**2), np.mean(flat**4)
      row = [second, np.abs(flat).mean(), np.log(fourth / (second**2 + 1e-6) + 1e-6)]
      row.append(np.mean(np.abs(flat) < 0.1))
      products = [
          x[:, :-1] * x[:, 1:],
          x[:-1, :] * x[1:, :],
          x[:-1, :-1] * x[1:, 1:],
          x[:-1, 1:] * x[1:, :-1],
      ]
      for product in products:
        row += [product.mean(), np.abs(product).mean()]
      laplacian = scipy.ndimage.laplace(tile)[1:-1, 1:-1]
      row.append(np.log(np.abs(laplacian).mean() + ss.DIFFERENCE_FLOOR))
      rows.append(row)
    per_scale += list(np.mean(rows, axis=0))
  return np.asarray(block + levels + per_scale)


@pytest.fixture(scope="module")
def frames():
  rng = np.random.default_rng(0)
  smooth = scipy.ndimage.gaussian_filter(rng.normal(128, 60, (2, 64, 96, 3)), (0, 1.5, 1.5, 0))
  return np.clip(smooth, 0, 255).astype(np.uint8)


def test_statistics_match_an_independent_reference(frames):
  got = np.asarray(ss.scene_statistics(frames, 32))
  assert got.shape == (2, ss.NUM_STATISTICS)
  want = np.stack([_reference(frame, 32) for frame in frames])
  np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)


def _quantise_blocks(image: np.ndarray, block: int, levels: float) -> np.ndarray:
  """A crude block codec: each block keeps its mean plus its deviations rounded to `levels`."""
  out = image.astype(np.float64).copy()
  for y in range(0, image.shape[0], block):
    for x in range(0, image.shape[1], block):
      tile = out[y : y + block, x : x + block]
      mean = tile.mean(axis=(0, 1))
      out[y : y + block, x : x + block] = mean + np.round((tile - mean) / levels) * levels
  return np.clip(out, 0, 255).astype(np.uint8)


def test_a_block_codec_raises_the_grid_ratio_and_a_shift_off_the_grid_hides_it():
  """The 8-px grid ratio (across columns) is near 0 for a clean texture, clearly positive after
  8-px block quantisation, and negative when the same frame is read 4 px off the grid: why
  fragments are cut at multiples of 16 (data.fragment_align)."""
  column_ratio_8 = 1  # block statistics are (4, 8, 16) across columns, then across rows
  rng = np.random.default_rng(1)
  texture = scipy.ndimage.gaussian_filter(rng.normal(128, 60, (128, 192, 3)), (1.5, 1.5, 0))
  clean = np.clip(texture, 0, 255).astype(np.uint8)
  coded = _quantise_blocks(clean, 8, 40.0)
  shifted = np.roll(coded, 4, axis=1)
  clean_ratio, coded_ratio, shifted_ratio = (
      float(ss.scene_statistics(frame[None], 32)[0, column_ratio_8])
      for frame in (clean, coded, shifted)
  )
  assert abs(clean_ratio) < 0.05
  assert coded_ratio > 0.5
  assert shifted_ratio < 0


def test_regions_must_fit_the_frame_and_the_grid(frames):
  with pytest.raises(ValueError, match="must be a multiple of 16 px and >= 32, got 24"):
    ss.scene_statistics(frames, 24)
  with pytest.raises(ValueError, match="do not split into regions of 64"):
    ss.scene_statistics(frames, 64)


def test_gradients_are_finite_on_flat_frames_and_beside_them():
  # A flat region has zero local variance, where the MSCN square root's derivative is infinite;
  # the statistics take it as 0 there, so a gradient through them (quality_fn on a black clip, a
  # clip with flat bars) stays finite.
  import jax
  import jax.numpy as jnp

  textured = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
  clips = {
      "black": np.zeros_like(textured),
      "grey": np.full_like(textured, 128.0),
      "flat top half": np.concatenate(
          [np.full_like(textured[:, :32], 90.0), textured[:, 32:]], axis=1
      ),
  }
  gradient_fn = jax.jit(jax.grad(lambda frames: jnp.sum(ss.scene_statistics(frames, 32))))
  for name, frames in clips.items():
    gradient = np.asarray(gradient_fn(jnp.asarray(frames)))
    assert np.isfinite(gradient).all(), name
  # Off the flat rows the statistics still respond to the pixels.
  assert np.abs(np.asarray(gradient_fn(jnp.asarray(clips["flat top half"])))[:, 32:]).max() > 0

"""Spatial and temporal fusion: pooling against torch/scipy, masking invariance, both token layouts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
import torch

from jaxvqa.models import fusion


def test_hann_l2_pool_matches_scipy_convolution():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 7, 9, 3)).astype(np.float32)
  window = np.outer([0.5, 1, 0.5], [0.5, 1, 0.5])
  window /= window.sum()
  expected = np.stack(
      [
          np.stack(
              [
                  np.sqrt(scipy.signal.convolve2d(x[n, :, :, c] ** 2, window, mode="same") + 1e-12)
                  for c in range(3)
              ],
              axis=-1,
          )
          for n in range(2)
      ]
  )
  np.testing.assert_allclose(fusion.hann_l2_pool(jnp.asarray(x)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size,grid", [(32, 8), (8, 8), (12, 8), (5, 8), (7, 3)])
def test_adaptive_avg_pool_matches_torch(size, grid):
  rng = np.random.default_rng(size)
  x = rng.normal(size=(2, size, size + 1, 4)).astype(np.float32)
  expected = (
      torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), grid)
      .permute(0, 2, 3, 1)
      .numpy()
  )
  np.testing.assert_allclose(
      fusion.adaptive_avg_pool(jnp.asarray(x), grid), expected, rtol=1e-5, atol=1e-6
  )


def test_sine_positions_distinct_and_bounded():
  code = fusion.sine_positions_2d(8, 32)
  assert code.shape == (64, 32)
  assert np.all(np.abs(code) <= 1.0)
  distances = np.linalg.norm(code[:, None] - code[None], axis=-1)
  assert np.all(distances[~np.eye(64, dtype=bool)] > 1e-3), "two grid positions share a code"
  # Row code depends on the row only: tokens of one row share their first half.
  grid = code.reshape(8, 8, 32)
  np.testing.assert_allclose(grid[:, 0, :16], grid[:, 5, :16])
  np.testing.assert_allclose(grid[0, :, 16:], grid[3, :, 16:])
  with pytest.raises(ValueError, match="even"):
    fusion.sine_positions_2d(4, 7)


def _stage_maps(rng, frames=3):
  shapes = [(16, 16, 8), (8, 8, 16), (4, 4, 32), (4, 4, 32)]
  return [jnp.asarray(rng.normal(size=(frames, *shape)), jnp.float32) for shape in shapes]


@pytest.mark.parametrize("layout", fusion.TOKEN_LAYOUTS)
def test_multi_stage_fusion_output_and_frame_independence(layout):
  rng = np.random.default_rng(1)
  stages = _stage_maps(rng)
  module = fusion.MultiStageFusion(
      grid=4, num_layers=1, num_heads=2, mlp_dim=16, out_dim=12, token_layout=layout, stage_width=8
  )
  params = module.init(jax.random.PRNGKey(0), stages)
  out = module.apply(params, stages)
  assert out.shape == (3, 12 + 32)
  # The second half is exactly the mean of the last stage map.
  np.testing.assert_allclose(out[:, 12:], stages[-1].mean(axis=(1, 2)), rtol=1e-6)
  # Frames are fused independently: scoring one frame alone gives its row of the batch.
  alone = module.apply(params, [s[1:2] for s in stages])
  np.testing.assert_allclose(alone[0], out[1], rtol=1e-5, atol=1e-6)
  # Dropout is active in training and changes the result.
  trained = module.apply(params, stages, train=True, rngs={"dropout": jax.random.PRNGKey(3)})
  assert not np.allclose(trained, out)


def test_fusion_rejects_unknown_layout():
  module = fusion.MultiStageFusion(token_layout="pixels")
  with pytest.raises(ValueError, match="token_layout"):
    module.init(jax.random.PRNGKey(0), _stage_maps(np.random.default_rng(0)))


def test_temporal_fusion_ignores_padding_frames():
  rng = np.random.default_rng(2)
  module = fusion.TemporalFusion(width=16, num_layers=2, num_heads=2, max_frames=8)
  features = jnp.asarray(rng.normal(size=(2, 4, 10)), jnp.float32)
  mask = jnp.ones((2, 4), bool)
  params = module.init(jax.random.PRNGKey(0), features, mask)
  reference = module.apply(params, features, mask)
  padded = jnp.concatenate(
      [features, jnp.asarray(rng.normal(size=(2, 3, 10)) * 50, jnp.float32)], axis=1
  )
  padded_mask = jnp.concatenate([mask, jnp.zeros((2, 3), bool)], axis=1)
  np.testing.assert_allclose(
      module.apply(params, padded, padded_mask), reference, rtol=1e-5, atol=1e-5
  )
  # The frames matter: changing a real frame changes the embedding.
  changed = features.at[0, 1].add(1.0)
  assert not np.allclose(module.apply(params, changed, mask)[0], reference[0])


def test_temporal_fusion_rejects_too_many_frames():
  module = fusion.TemporalFusion(width=8, num_layers=1, num_heads=2, max_frames=4)
  with pytest.raises(ValueError, match="max_frames"):
    module.init(jax.random.PRNGKey(0), jnp.zeros((1, 5, 6)), jnp.ones((1, 5), bool))

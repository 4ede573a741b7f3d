"""The fused MLP half-block (`mlp_pallas`) against the block's own XLA modules, run by Pallas'
interpreter on CPU: fp32 and bf16 results, the gradient (XLA's own), what it refuses, how SwinV2
chooses it, and the Triton lowering a GPU would compile.

One geometry serves the numerical tests: 64 tokens of 96 channels (3 parts of 32, as SwinV2-T's
first stage) and 384 hidden units (three steps of the hidden loop), 32 rows per program.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvqa.models import mlp_pallas, swinv2

TOKENS, DIM, HIDDEN = 64, 96, 384
BF16_BOUND = 1.5e-2


def half_block(dtype, seed: int = 0):
  """(reference, params, x [2, 4, 8, DIM]) with every parameter away from its initial value."""
  keys = iter(jax.random.split(jax.random.key(seed), 8))
  normal = lambda shape, scale: scale * jax.random.normal(next(keys), shape, jnp.float32)
  params = {
      "fc1": {"kernel": normal((DIM, HIDDEN), DIM**-0.5), "bias": normal((HIDDEN,), 0.1)},
      "fc2": {"kernel": normal((HIDDEN, DIM), HIDDEN**-0.5), "bias": normal((DIM,), 0.1)},
      "norm": {"scale": 1.0 + normal((DIM,), 0.2), "bias": normal((DIM,), 0.2)},
  }
  x = normal((2, 4, 8, DIM), 1.0).astype(dtype)
  return swinv2.mlp_half_reference(DIM, HIDDEN, dtype, jnp.float32), params, x


def fused(reference, **options):
  options = {"interpret": True, **options}
  return jax.jit(
      lambda x, params: mlp_pallas.residual_mlp(
          x, params, reference=reference, epsilon=swinv2.LAYER_NORM_EPS, **options
      )
  )


def relative_l2_error(ours, reference) -> float:
  reference = reference.astype(jnp.float32)
  return float(jnp.linalg.norm(ours.astype(jnp.float32) - reference) / jnp.linalg.norm(reference))


def test_fp32_matches_the_blocks_modules():
  reference, params, x = half_block(jnp.float32)
  expected = jax.jit(reference)(x, params)
  ours = fused(reference)(x, params)
  assert ours.shape == x.shape and ours.dtype == jnp.float32
  # The erf of the exact GELU is a polynomial in the kernel (error ≤ 1.5e-7).
  np.testing.assert_allclose(ours, expected, atol=2e-5, rtol=0)
  assert float(jnp.max(jnp.abs(ours - x))) > 0.5  # the MLP's branch is not negligible


def test_bf16_is_bounded_against_fp32_like_xlas_own():
  exact_reference, params, x = half_block(jnp.float32)
  exact = jax.jit(exact_reference)(x, params)
  reference, _, x_bf16 = half_block(jnp.bfloat16)
  ours = fused(reference)(x_bf16, params)
  xla = jax.jit(reference)(x_bf16, params)
  assert ours.dtype == jnp.bfloat16
  error, xla_error = relative_l2_error(ours, exact), relative_l2_error(xla, exact)
  assert error < BF16_BOUND and error < 2 * xla_error, (error, xla_error)


def test_the_gradient_is_xlas_own():
  reference, params, x = half_block(jnp.float32)
  cotangent = jax.random.normal(jax.random.key(5), x.shape)

  def gradient(function):
    return jax.jit(jax.grad(lambda x, p: jnp.sum(function(x, p) * cotangent), argnums=(0, 1)))

  ours, expected = gradient(fused(reference))(x, params), gradient(reference)(x, params)
  for o, e in zip(jax.tree.leaves(ours), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(o, e)
  assert float(jnp.max(jnp.abs(ours[1]["norm"]["scale"]))) > 0


def test_supports_and_refusals():
  assert mlp_pallas.supports(TOKENS, DIM, HIDDEN)
  for tokens, dim in ((64 * 64 * 64, 96), (64 * 32 * 32, 192), (64 * 256, 384), (64 * 64, 768)):
    assert mlp_pallas.supports(tokens, dim, 4 * dim), (tokens, dim)  # SwinV2-T at 256², batch 64
  assert not mlp_pallas.supports(24, DIM, HIDDEN)  # rows: no power of two ≥ 16 divides 24
  assert not mlp_pallas.supports(TOKENS, 80, 320)  # 80 = 5 × 16: too many parts
  assert not mlp_pallas.supports(TOKENS, 8, 128)  # parts of 8 channels: below Triton's dot
  assert not mlp_pallas.supports(TOKENS, DIM, 192)  # hidden not a multiple of the chunk
  reference, params, _ = half_block(jnp.float32)
  with pytest.raises(ValueError, match=r"residual_mlp: 24 tokens of 96 channels"):
    fused(reference)(jnp.zeros((24, DIM)), params)


def block(impl: str, dtype=jnp.float32) -> swinv2.SwinV2Block:
  return swinv2.SwinV2Block(
      DIM, 3, swinv2.windows.StageWindow(4, 0), dtype=dtype, attention_impl=impl
  )


def test_swinv2_block_takes_the_kernel_for_pallas_and_its_modules_for_xla():
  x = jax.random.normal(jax.random.key(0), (2, 4, 8, DIM))
  params = jax.jit(block("xla").init)(jax.random.key(1), x)
  params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.key(2), p.shape), params)
  outputs = {impl: jax.jit(block(impl).apply)(params, x) for impl in ("xla", "auto", "pallas")}
  np.testing.assert_array_equal(outputs["auto"], outputs["xla"])  # CPU: the modules themselves
  np.testing.assert_allclose(outputs["pallas"], outputs["xla"], atol=2e-5, rtol=0)
  assert not np.array_equal(outputs["pallas"], outputs["xla"])  # the kernel did run


@pytest.mark.parametrize("dim", [96, 192, 384, 768])
def test_lowers_to_triton_for_gpu_at_every_swinv2_t_width(dim):
  # Lowering for CUDA runs Pallas' Triton lowering on this CPU machine, which refuses loads of
  # arrays whose size is not a power of two: the channel parts must keep every load legal.
  model = swinv2.SwinV2Block(
      dim, dim // 32, swinv2.windows.StageWindow(8, 0), dtype=jnp.bfloat16, attention_impl="auto"
  )
  x = jax.ShapeDtypeStruct((2, 8, 8, dim), jnp.bfloat16)
  params = jax.eval_shape(model.init, jax.random.key(0), x)
  text = jax.jit(model.apply).trace(params, x).lower(lowering_platforms=("cuda",)).as_text()
  assert text.count("__gpu$xla.gpu.triton") == 2  # the window attention and the MLP half
  assert "swinv2_residual_mlp" in text

"""What the Pallas window-attention kernels share: the static plan of a call, where a window's
rows lie in the map, and the arithmetic on one tile (dots, normalisation, softmax).

`window_attention_pallas` (the forward and the public call) and `window_attention_pallas_backward`
(the gradients) build on this; neither is meant to be called from here.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu
import jax.numpy as jnp

from jaxvqa.models.l2 import l2_normalize

QKV = {"q": 0, "k": 1, "v": 2}
# The whole array in every program: the kernels address the map's rows themselves.
WHOLE = pl.BlockSpec()


class Plan(NamedTuple):
  """Static choices of one call (hashable: it is a `custom_vjp` non-differentiable argument)."""

  height: int  # the map's sides, multiples of `window`
  width: int
  window: int
  shift: int  # the cyclic shift: window w's mask is mask[w mod num_windows]
  block_rows: int
  windows_per_program: int
  interpret: bool | None  # None: Triton where lowered for CUDA, the interpreter elsewhere
  backward: str  # window_attention_pallas.BACKWARDS

  @property
  def num_windows(self) -> int:
    """Windows per image."""
    return (self.height // self.window) * (self.width // self.window)

  @property
  def tokens(self) -> int:
    """Tokens per window, N."""
    return self.window**2

  @property
  def blocks(self) -> int:
    """Blocks of `block_rows` rows per window."""
    return self.tokens // self.block_rows


def dot(a: jax.Array, b: jax.Array, contract: tuple[int, int]) -> jax.Array:
  """2-D a·b contracting a's axis contract[0] with b's axis contract[1]; fp32 accumulation.

  fp32 inputs are multiplied in full fp32 (Precision.HIGHEST, Triton's "ieee"): at the default
  precision Triton rounds them to TF32, and on the H200 the fp32 kernel then differed from XLA's
  fp32 path by 1e-3 to 6e-3 (benchmarks/window_attention.py, 2026-11-30), 10-60× its bound.
  bf16 inputs keep Triton's default."""
  dims = (((contract[0],), (contract[1],)), ((), ()))
  precision = jax.lax.Precision.HIGHEST if a.dtype == jnp.float32 else None
  return jax.lax.dot_general(a, b, dims, precision=precision, preferred_element_type=jnp.float32)


def unit(x: jax.Array, dtype) -> jax.Array:
  """x [n, d] → x/‖x‖ per row, normalised in fp32 (as the XLA path) and rounded to `dtype`."""
  return l2_normalize(x).astype(dtype)


def logits(q_hat, k_hat, scale, bias, mask):
  """τ·q̂·k̂ᵀ + bias (+ mask) of one tile: q̂ [R, d], k̂ [C, d]; bias, mask [R, C] (mask may be
  None). Returns (logits, cos = q̂·k̂ᵀ), both [R, C] fp32."""
  cos = dot(q_hat, k_hat, (1, 1))
  out = scale * cos + bias
  return (out if mask is None else out + mask), cos


def softmax(s: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Softmax of whole rows s [R, N], and each row's log-normaliser log Σ_j exp(s) [R]."""
  top = jnp.max(s, axis=1)
  exp = jnp.exp(s - top[:, None])
  total = jnp.sum(exp, axis=1)
  return exp / total[:, None], top + jnp.log(total)


def probabilities(q_hat, k_hat, scale, bias, mask):
  """Softmax rows of one block, with its whole rows of keys: (P, cos), both [R, N] fp32."""
  s, cos = logits(q_hat, k_hat, scale, bias, mask)
  return softmax(s)[0], cos


def l2_normalize_vjp(x: jax.Array, cotangent: jax.Array) -> jax.Array:
  """Cotangent of x [n, d] through `l2_normalize`, from the cotangent of its output (fp32)."""
  _, vjp = jax.vjp(l2_normalize, x.astype(jnp.float32))
  return vjp(cotangent)[0]


def window_rows(plan: Plan, window_index, start, count: int):
  """(image, rows [count] of the flattened map) of tokens start … start+count−1 of window
  `window_index`, counted over the batch: where `jnp.roll` by −shift and the partition would
  have taken them from."""
  per_row = plan.width // plan.window
  image, within = window_index // plan.num_windows, window_index % plan.num_windows
  token = start + jax.lax.broadcasted_iota(jnp.int32, (count,), 0)
  row = (within // per_row) * plan.window + token // plan.window + plan.shift
  col = (within % per_row) * plan.window + token % plan.window + plan.shift
  if plan.shift:
    row, col = row % plan.height, col % plan.width
  return image, row * plan.width + col


def pallas_call(plan: Plan, kernel, *, tile_values: int, **options):
  """`pl.pallas_call` of `kernel(..., plan=plan)` for Triton, interpreted when `plan.interpret`
  says so. `tile_values`: the values of the kernel's largest fp32 tile, which sets its warps.

  With interpret None the choice is made per platform when XLA lowers the program
  (`lax.platform_dependent`), not from the default backend: parameters initialised on the host
  CPU of a GPU machine (`steps.on_host`) then take the interpreter there and Triton on the GPU.
  """

  def call(interpret: bool):
    # 4 warps for a 64 × 64 tile; a 64 × 256 one (window 16) has four times the values.
    params = plgpu.CompilerParams(num_warps=4 if tile_values <= 64 * 64 else 8, num_stages=1)
    return pl.pallas_call(
        functools.partial(kernel, plan=plan),
        compiler_params=params,
        interpret=interpret,
        **options,
    )

  if plan.interpret is not None:
    return call(plan.interpret)
  return lambda *operands: jax.lax.platform_dependent(
      *operands, cuda=call(False), default=call(True)
  )

"""The MLP half of a SwinV2 block, x + LayerNorm(fc2(GELU(fc1(x)))), as one Pallas kernel (GPU,
Triton lowering): the hidden activation never leaves the chip.

XLA runs this half as three passes over memory: fc1 writes the hidden activation (four times the
block's channels; GELU rides in its epilogue), fc2 reads it back, and a LayerNorm-plus-residual
fusion reads fc2's output and x. Per token that is 13 values of C moved; here a program reads its
R tokens' rows of x once, and for each chunk of `HIDDEN_CHUNK` hidden units computes
GELU(x·W1 + b1) and adds its product with W2's rows to an fp32 accumulator [R, C], then
normalises the accumulator's rows and writes x + LayerNorm(...): 2 values of C per token.

Channels: SwinV2's widths are 3·2^k (96 … 768) and Triton loads only arrays of power-of-two size,
so the channel axis is seen as [parts, part] with `part` its largest power-of-two divisor (96 = 3
× 32) and every load and dot is per part; W1 is read as [parts, part, hidden] and W2 as [hidden,
parts, part], both free reshapes.

GELU: the tanh form where the block computes in half precision (`swinv2.MLP` uses it there), the
exact erf form in fp32. Triton has no erf, so the kernel evaluates it by Abramowitz and Stegun's
7.1.26 (absolute error ≤ 1.5e-7), far inside the fp32 parity bound of 1e-4.

Gradients: the kernel has no backward of its own. Differentiated, the call runs `reference` (the
block's own XLA computation) forward and backward, so a training step costs what the XLA path's
does; calls that are not differentiated (scoring, the backbone's inference) take the kernel.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu
import jax.numpy as jnp

from jaxvqa.models import window_attention_tiles as tiles

# Hidden units per step of the loop: a [R, 128] fp32 tile of the activation beside the [R, C]
# accumulator. Untuned.
HIDDEN_CHUNK = 128
# Token rows per program: the accumulator holds R·C fp32 values, so wide stages take fewer rows.
MAX_ROWS = 64
MAX_ROW_VALUES = 64 * 384
MIN_DOT_SIDE = 16
# A channel axis of more parts than this would unroll too many loads and dots per step.
MAX_PARTS = 4
# Abramowitz and Stegun 7.1.26: erf(x) ≈ 1 − t·(a1 + t·(a2 + …))·e^(−x²), t = 1 / (1 + p·x).
_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


class Plan(NamedTuple):
  """Static choices of one call."""

  rows: int  # tokens per program
  parts: int  # the channel axis as [parts, part]
  part: int
  hidden: int
  approximate: bool  # tanh GELU (half precision) or erf GELU (fp32)
  epsilon: float
  interpret: bool | None  # None: Triton where lowered for CUDA, the interpreter elsewhere


def _channel_parts(dim: int) -> tuple[int, int]:
  """(parts, part): part is the largest power of two dividing dim."""
  part = dim & -dim
  return dim // part, part


def _rows(tokens: int, dim: int) -> int:
  """The largest power of two ≤ MAX_ROWS dividing `tokens` whose accumulator fits."""
  rows = MAX_ROWS
  while rows > MIN_DOT_SIDE and (tokens % rows or rows * dim > MAX_ROW_VALUES):
    rows //= 2
  return rows


def supports(tokens: int, dim: int, hidden: int) -> bool:
  """Whether the kernel takes `tokens` rows of `dim` channels with `hidden` hidden units: dim a
  power of two ≥ 16 times at most `MAX_PARTS`, hidden a multiple of `HIDDEN_CHUNK`, and tokens a
  multiple of 16 (of 32 for dims above 768)."""
  parts, part = _channel_parts(dim)
  rows = _rows(tokens, dim)
  return (
      part >= MIN_DOT_SIDE
      and parts <= MAX_PARTS
      and hidden % HIDDEN_CHUNK == 0
      and tokens % rows == 0
      and rows * dim <= 2 * MAX_ROW_VALUES
  )


def _erf(x: jax.Array) -> jax.Array:
  t = 1.0 / (1.0 + _ERF_P * jnp.abs(x))
  poly = t * (_ERF_A[0] + t * (_ERF_A[1] + t * (_ERF_A[2] + t * (_ERF_A[3] + t * _ERF_A[4]))))
  return jnp.sign(x) * (1.0 - poly * jnp.exp(-x * x))


def _gelu(x: jax.Array, approximate: bool) -> jax.Array:
  if approximate:
    return jax.nn.gelu(x, approximate=True)
  return 0.5 * x * (1.0 + _erf(x * 0.7071067811865476))


def _kernel(x_ref, w1_ref, b1_ref, w2_ref, b2_ref, scale_ref, shift_ref, out_ref, *, plan: Plan):
  """One program: R token rows. x_ref, out_ref [N, parts, part]; w1_ref [parts, part, hidden];
  b1_ref [hidden]; w2_ref [hidden, parts, part]; b2_ref, scale_ref, shift_ref [parts, part]."""
  rows = pl.ds(pl.program_id(0) * plan.rows, plan.rows)
  xs = [x_ref[rows, j, :] for j in range(plan.parts)]
  dtype = xs[0].dtype

  def add_chunk(step, accumulators):
    hidden = pl.ds(pl.multiple_of(step * HIDDEN_CHUNK, HIDDEN_CHUNK), HIDDEN_CHUNK)
    pre = b1_ref[hidden].astype(jnp.float32)[None, :]
    for j in range(plan.parts):
      pre = pre + tiles.dot(xs[j], w1_ref[j, :, hidden], (1, 0))
    activation = _gelu(pre, plan.approximate).astype(dtype)
    return tuple(
        acc + tiles.dot(activation, w2_ref[hidden, j, :], (1, 0))
        for j, acc in enumerate(accumulators)
    )

  zeros = tuple(jnp.zeros((plan.rows, plan.part), jnp.float32) for _ in range(plan.parts))
  ys = jax.lax.fori_loop(0, plan.hidden // HIDDEN_CHUNK, add_chunk, zeros)
  ys = [y + b2_ref[j, :].astype(jnp.float32)[None, :] for j, y in enumerate(ys)]
  dim = plan.parts * plan.part
  mean = sum(jnp.sum(y, axis=1) for y in ys)[:, None] / dim
  variance = sum(jnp.sum((y - mean) ** 2, axis=1) for y in ys)[:, None] / dim
  inverse = jax.lax.rsqrt(variance + plan.epsilon)
  for j, y in enumerate(ys):
    normed = (y - mean) * inverse * scale_ref[j, :].astype(jnp.float32)[None, :]
    normed = normed + shift_ref[j, :].astype(jnp.float32)[None, :]
    out_ref[rows, j, :] = (xs[j].astype(jnp.float32) + normed).astype(out_ref.dtype)


def _forward(plan: Plan, x, params):
  """x [N, C] → [N, C] in x's dtype; params as `residual_mlp`'s, cast to x's dtype."""
  tokens, dim = x.shape
  cast = lambda a: a.astype(x.dtype)
  split = (plan.parts, plan.part)
  operands = (
      x.reshape(tokens, *split),
      cast(params["fc1"]["kernel"]).reshape(*split, plan.hidden),
      cast(params["fc1"]["bias"]),
      cast(params["fc2"]["kernel"]).reshape(plan.hidden, *split),
      cast(params["fc2"]["bias"]).reshape(split),
      params["norm"]["scale"].reshape(split),
      params["norm"]["bias"].reshape(split),
  )
  warps = 4 if plan.rows * dim <= 64 * 192 else 8

  def call(interpret: bool):
    return pl.pallas_call(
        functools.partial(_kernel, plan=plan),
        grid=(tokens // plan.rows,),
        in_specs=[tiles.WHOLE] * len(operands),
        out_specs=tiles.WHOLE,
        out_shape=jax.ShapeDtypeStruct((tokens, *split), x.dtype),
        compiler_params=plgpu.CompilerParams(num_warps=warps, num_stages=1),
        interpret=interpret,
        name="swinv2_residual_mlp",
    )

  if plan.interpret is None:
    out = jax.lax.platform_dependent(*operands, cuda=call(False), default=call(True))
  else:
    out = call(plan.interpret)(*operands)
  return out.reshape(tokens, dim)


def residual_mlp(
    x: jax.Array,
    params: dict,
    *,
    reference: Callable[[jax.Array, dict], jax.Array],
    epsilon: float,
    interpret: bool | None = None,
) -> jax.Array:
  """x + LayerNorm(fc2(GELU(fc1(x)))) over the last axis, in one kernel.

  x: [..., C] (its dtype is the compute dtype: bf16 takes the tanh GELU, fp32 the erf one).
  params: {"fc1": {"kernel": [C, hidden], "bias": [hidden]}, "fc2": {"kernel": [hidden, C],
    "bias": [C]}, "norm": {"scale": [C], "bias": [C]}}, any float dtype.
  reference: the same function in XLA, reference(x, params) → [..., C]; it serves the gradient.
  epsilon: the LayerNorm's.
  interpret: True: Pallas' interpreter; False: Triton; None: chosen per lowering.
  Raises ValueError where `supports` is false.
  """
  dim = x.shape[-1]
  tokens = x.size // dim
  hidden = params["fc1"]["kernel"].shape[-1]
  if not supports(tokens, dim, hidden):
    raise ValueError(
        f"residual_mlp: {tokens} tokens of {dim} channels and {hidden} hidden units do not suit "
        "the kernel (see mlp_pallas.supports); use the XLA path."
    )
  parts, part = _channel_parts(dim)
  plan = Plan(
      rows=_rows(tokens, dim),
      parts=parts,
      part=part,
      hidden=hidden,
      approximate=jnp.dtype(x.dtype).itemsize < 4,
      epsilon=epsilon,
      interpret=interpret,
  )

  @jax.custom_vjp
  def fused(x, params):
    return _forward(plan, x.reshape(tokens, dim), params).reshape(x.shape)

  def fused_fwd(x, params):
    return jax.vjp(reference, x, params)  # the residuals are XLA's own backward

  def fused_bwd(backward, cotangent):
    return backward(cotangent)

  fused.defvjp(fused_fwd, fused_bwd)
  return fused(x, params)

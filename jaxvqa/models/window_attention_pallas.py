"""SwinV2's shifted-window attention as one Pallas kernel (GPU, Triton lowering): logits never
leave the chip, and the windows are never cut out of the map.

The XLA path (`window_attention.shifted_window_attention`) rolls the map by −shift, copies it into windows,
writes every window's fp32 logits and softmax to memory and reads them back (200 MB per SwinV2-T
stage-0 block at batch 64, docs/PERFORMANCE.md), and copies the result back into the map. Here one
program gathers a window's rows straight from the map — token t of window (i, j) is map position
((i·s + t // s + shift) mod H, (j·s + t mod s + shift) mod W) for a window of side s, which is
exactly where the roll and the partition would have put it — and scatters its output rows to the
same positions, so the roll, the partition and their inverses cost nothing. For window w and
head h (N = s² tokens, d = head_dim, all fp32 except the matmul operands, which keep the input
dtype):

  q̂, k̂ = l2_normalize(q), l2_normalize(k)                [N, d]
  S = τ_h · q̂·k̂ᵀ + position_bias[h] + mask[w mod nW]     [N, N], never written out
  out = softmax(S) · v                                     [N, d]

τ = exp(min(logit_scale, ln 100)) is the caller's [heads] vector, so the clamp's gradient is
plain JAX. A window is small enough that each program sees whole rows of S: the softmax is exact,
with no running maximum (FlashAttention's online softmax is not needed), and the backward
recomputes S from q, k instead of storing it.

Backward (`jax.custom_vjp`, a second kernel): the gradients of q, k, v per window, and of the
position bias and τ, which are shared by every window and so are summed over windows: a program
takes a run of `windows_per_program` windows of one head, sums dS (and dS·q̂k̂ᵀ for τ) over them
on chip, and writes one [N, N] partial; XLA adds the partials. The mask is a constant and gets
no gradient.

What the Triton lowering asks for, and how this kernel meets it: every array a program loads or
stores has a power-of-two size (rows of N and d, both powers of two here); dots are 2-D with fp32
accumulation and need sides ≥ 16 — hence `supports`; a program never reads back what it stored
(on a GPU its threads would race). Windows of 256 tokens (window 16) are cut into blocks of
`MAX_BLOCK_ROWS` query rows so a block of S stays a register-sized tile; the backward still keeps
a whole [N, N] position-bias sum per program, which at window 16 does not fit in registers, so
there the gradient is XLA's by default (`default_backward`). The
gathered rows cost what the earlier window-layout kernel's rows did: a token's q, k or v for one
head is d contiguous values either way.

Lowered for any platform but a CUDA GPU, the same kernels run through Pallas' interpreter
(`interpret=True`, chosen when XLA lowers the program): that is how the tests check them on
CPU, and it is slow. `on_cuda` (SwinV2's default, "auto") takes the XLA path there instead.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu
import jax.numpy as jnp

from jaxvqa.models import window_attention
from jaxvqa.models.l2 import l2_normalize

# Query rows per block of S: 64 × 256 fp32 logits is about the most a program keeps in registers.
MAX_BLOCK_ROWS = 64
# Triton's dot needs each side ≥ 16.
MIN_DOT_SIDE = 16
# Enough programs in the backward to fill an H200's 132 SMs several times over; past that, more
# windows per program only shrink the position-bias partials. Untuned: no GPU has run this yet.
TARGET_BACKWARD_PROGRAMS = 1024
MAX_WINDOWS_PER_PROGRAM = 32

_QKV = {"q": 0, "k": 1, "v": 2}
# Where the gradient comes from: the kernel's own backward, or XLA's (forward and backward, as
# the XLA path runs them; the kernel still serves calls that are not differentiated).
BACKWARDS = ("kernel", "xla")


def default_backward(tokens: int) -> str:
  """The backward for windows of `tokens` tokens: the kernel's where a window is one block of
  rows (window 8), XLA's for larger windows (window 16, configs/default.py's backbone).

  At window 16 the kernel's backward carries a [256, 256] fp32 position-bias sum through its loop
  over windows: 256 values per thread at 8 warps, more than a thread's 255 registers, so it
  spills. configs/default.py's training step ran 2.2× slower with the kernel (98.6 ms on an H100,
  2026-12-07) than XLA's path had (44 ms, 2026-11-25). Until the kernel's backward splits its
  rows across programs and is timed faster, XLA's gradient serves there; the forward stays the
  kernel's. `benchmarks/window_attention.py --window 16` times both.
  """
  return "kernel" if tokens <= MAX_BLOCK_ROWS else "xla"


def _is_power_of_two(n: int) -> bool:
  return n > 0 and n & (n - 1) == 0


def supports(tokens: int, head_dim: int) -> bool:
  """Whether the kernel takes windows of `tokens` (= window²) and heads of `head_dim`.

  True for powers of two ≥ 16: windows 4, 8, 16 with SwinV2's 32-wide heads. Stages whose window
  is clamped smaller (a map of 2×2 tokens) stay on the XLA path.
  """
  return all(_is_power_of_two(n) and n >= MIN_DOT_SIDE for n in (tokens, head_dim))


class _Plan(NamedTuple):
  """Static choices of one call (hashable: it is a `custom_vjp` non-differentiable argument)."""

  height: int  # the map's sides, multiples of `window`
  width: int
  window: int
  shift: int  # the cyclic shift: window w's mask is mask[w mod num_windows]
  block_rows: int
  windows_per_program: int
  interpret: bool | None  # None: Triton where lowered for CUDA, the interpreter elsewhere
  backward: str  # one of BACKWARDS

  @property
  def num_windows(self) -> int:
    """Windows per image."""
    return (self.height // self.window) * (self.width // self.window)


def _dot(a: jax.Array, b: jax.Array, contract: tuple[int, int]) -> jax.Array:
  """2-D a·b contracting a's axis contract[0] with b's axis contract[1]; fp32 accumulation.

  fp32 inputs are multiplied in full fp32 (Precision.HIGHEST, Triton's "ieee"): at the default
  precision Triton rounds them to TF32, and on the H200 the fp32 kernel then differed from XLA's
  fp32 path by 1e-3 to 6e-3 (benchmarks/window_attention.py, 2026-11-30), 10-60× its bound.
  bf16 inputs keep Triton's default."""
  dims = (((contract[0],), (contract[1],)), ((), ()))
  precision = jax.lax.Precision.HIGHEST if a.dtype == jnp.float32 else None
  return jax.lax.dot_general(a, b, dims, precision=precision, preferred_element_type=jnp.float32)


def _unit(x: jax.Array, dtype) -> jax.Array:
  """x [n, d] → x/‖x‖ per row, normalised in fp32 (as the XLA path) and rounded to `dtype`."""
  return l2_normalize(x).astype(dtype)


def _probabilities(q_hat, k_hat, scale, bias, mask):
  """Softmax rows of one block: q̂ [R, d], k̂ [N, d]; bias, mask [R, N] (mask may be None).

  Returns (P, cos = q̂·k̂ᵀ), both [R, N] fp32.
  """
  cos = _dot(q_hat, k_hat, (1, 1))
  logits = scale * cos + bias
  if mask is not None:
    logits = logits + mask
  exp = jnp.exp(logits - jnp.max(logits, axis=1, keepdims=True))
  return exp / jnp.sum(exp, axis=1, keepdims=True), cos


def _l2_normalize_vjp(x: jax.Array, cotangent: jax.Array) -> jax.Array:
  """Cotangent of x [n, d] through `l2_normalize`, from the cotangent of its output (fp32)."""
  _, vjp = jax.vjp(l2_normalize, x.astype(jnp.float32))
  return vjp(cotangent)[0]


def _window_rows(plan: _Plan, window_index, start, count: int):
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


def _forward_kernel(qkv_ref, scale_ref, bias_ref, *refs, plan: _Plan):
  """One (window, head, block of R query rows). qkv_ref [B, H·W, 3, heads, d], the whole map;
  bias_ref, mask_ref [R, N]; out_ref [B, H·W, heads, d], the whole map."""
  mask_ref, out_ref = refs if len(refs) == 2 else (None, refs[0])
  window, head = pl.program_id(0), pl.program_id(1)
  image, rows = _window_rows(plan, window, pl.program_id(2) * plan.block_rows, plan.block_rows)
  _, tokens = _window_rows(plan, window, 0, plan.window**2)
  v = qkv_ref[image, tokens, _QKV["v"], head, :]
  p, _ = _probabilities(
      _unit(qkv_ref[image, rows, _QKV["q"], head, :], v.dtype),
      _unit(qkv_ref[image, tokens, _QKV["k"], head, :], v.dtype),
      scale_ref[...],
      bias_ref[...],
      None if mask_ref is None else mask_ref[...],
  )
  out_ref[image, rows, head, :] = _dot(p.astype(v.dtype), v, (1, 0)).astype(out_ref.dtype)


def _backward_kernel(qkv_ref, dout_ref, scale_ref, bias_ref, *refs, plan: _Plan):
  """One (head, run of G windows). qkv_ref [B, H·W, 3, heads, d] and dout_ref [B, H·W, heads, d],
  whole maps; bias_ref [N, N]; mask_ref [nW, N, N]. Writes dqkv_ref (qkv's shape, whole) and this
  run's sums dbias_ref [N, N], dscale_ref []."""
  mask_ref = refs[0] if len(refs) == 4 else None
  dqkv_ref, dbias_ref, dscale_ref = refs[-3:]
  head = pl.program_id(0)
  first_window = pl.program_id(1) * plan.windows_per_program
  scale = scale_ref[...]
  tokens = plan.window**2
  starts = range(0, tokens, plan.block_rows)
  biases = [bias_ref[pl.ds(start, plan.block_rows), :] for start in starts]

  def one_window(g, sums):
    dbiases, dscale = sums
    window = first_window + g
    image, all_rows = _window_rows(plan, window, 0, tokens)
    k = qkv_ref[image, all_rows, _QKV["k"], head, :]
    v = qkv_ref[image, all_rows, _QKV["v"], head, :]
    k_hat = _unit(k, v.dtype)
    # Every gradient is written once: k and v gather over the row blocks in registers, since a
    # program re-reading what its own threads stored to global memory would race on a GPU.
    dk_hat = dv = jnp.zeros(k.shape, jnp.float32)
    sums = []
    for start, bias, dbias in zip(starts, biases, dbiases):
      _, rows = _window_rows(plan, window, start, plan.block_rows)
      q, dout = qkv_ref[image, rows, _QKV["q"], head, :], dout_ref[image, rows, head, :]
      mask = None
      if mask_ref is not None:
        mask = mask_ref[window % plan.num_windows, pl.ds(start, plan.block_rows), :]
      q_hat = _unit(q, v.dtype)
      p, cos = _probabilities(q_hat, k_hat, scale, bias, mask)
      dp = _dot(dout, v, (1, 1))  # [R, N]
      ds = p * (dp - jnp.sum(p * dp, axis=1, keepdims=True))  # dL/dS
      dcos = (scale * ds).astype(v.dtype)
      dq = _l2_normalize_vjp(q, _dot(dcos, k_hat, (1, 0)))  # [R, d]
      dqkv_ref[image, rows, _QKV["q"], head, :] = dq.astype(dqkv_ref.dtype)
      dk_hat += _dot(dcos, q_hat, (0, 0))  # [N, d]
      dv += _dot(p.astype(v.dtype), dout, (0, 0))  # [N, d]
      sums.append(dbias + ds)
      dscale += jnp.sum(ds * cos)
    dk = _l2_normalize_vjp(k, dk_hat)
    dqkv_ref[image, all_rows, _QKV["k"], head, :] = dk.astype(dqkv_ref.dtype)
    dqkv_ref[image, all_rows, _QKV["v"], head, :] = dv.astype(dqkv_ref.dtype)
    return tuple(sums), dscale

  zeros = tuple(jnp.zeros((plan.block_rows, tokens), jnp.float32) for _ in starts)
  dbiases, dscale = jax.lax.fori_loop(
      0, plan.windows_per_program, one_window, (zeros, jnp.zeros((), jnp.float32))
  )
  for start, dbias in zip(starts, dbiases):
    dbias_ref[pl.ds(start, plan.block_rows), :] = dbias
  dscale_ref[...] = dscale


def _pallas_call(plan: _Plan, kernel, **options):
  """`pl.pallas_call` for Triton, interpreted when `plan.interpret` says so.

  With interpret None the choice is made per platform when XLA lowers the program
  (`lax.platform_dependent`), not from the default backend: parameters initialised on the host
  CPU of a GPU machine (`steps.on_host`) then take the interpreter there and Triton on the GPU.
  """

  def call(interpret: bool):
    # num_warps: 4 for a 64 × 64 tile; a 64 × 256 one (window 16) has four times the values.
    params = plgpu.CompilerParams(num_warps=4 if plan.window**2 <= 64 else 8, num_stages=1)
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


# The whole array in every program: the kernels address the map's rows themselves.
_WHOLE = pl.BlockSpec()


def _forward(plan: _Plan, qkv, scale, bias, mask):
  """qkv [B, H·W, 3, heads, d] → [B, H·W, heads, d]."""
  batch, area, _, heads, head_dim = qkv.shape
  rows, tokens = plan.block_rows, plan.window**2
  in_specs = [
      _WHOLE,
      pl.BlockSpec((None,), lambda w, h, r: (h,)),
      pl.BlockSpec((None, rows, tokens), lambda w, h, r: (h, r, 0)),
  ]
  operands = [qkv, scale, bias]
  if mask is not None:
    in_specs.append(
        pl.BlockSpec((None, rows, tokens), lambda w, h, r: (w % plan.num_windows, r, 0))
    )
    operands.append(mask)
  return _pallas_call(
      plan,
      _forward_kernel,
      grid=(batch * plan.num_windows, heads, tokens // rows),
      in_specs=in_specs,
      out_specs=_WHOLE,
      out_shape=jax.ShapeDtypeStruct((batch, area, heads, head_dim), qkv.dtype),
      name="swinv2_window_attention_fwd",
  )(*operands)


def _backward(plan: _Plan, qkv, scale, bias, mask, dout):
  """Cotangents of qkv [B, H·W, 3, heads, d], scale [heads], bias [heads, N, N]."""
  batch, _, _, heads, _ = qkv.shape
  tokens = plan.window**2
  runs = batch * plan.num_windows // plan.windows_per_program
  in_specs = [
      _WHOLE,
      _WHOLE,
      pl.BlockSpec((None,), lambda h, c: (h,)),
      pl.BlockSpec((None, tokens, tokens), lambda h, c: (h, 0, 0)),
  ]
  operands = [qkv, dout, scale, bias]
  if mask is not None:
    in_specs.append(_WHOLE)
    operands.append(mask)
  dqkv, dbias_runs, dscale_runs = _pallas_call(
      plan,
      _backward_kernel,
      grid=(heads, runs),
      in_specs=in_specs,
      out_specs=[
          _WHOLE,
          pl.BlockSpec((None, None, tokens, tokens), lambda h, c: (c, h, 0, 0)),
          pl.BlockSpec((None, None), lambda h, c: (c, h)),
      ],
      out_shape=[
          jax.ShapeDtypeStruct(qkv.shape, qkv.dtype),
          jax.ShapeDtypeStruct((runs, heads, tokens, tokens), jnp.float32),
          jax.ShapeDtypeStruct((runs, heads), jnp.float32),
      ],
      name="swinv2_window_attention_bwd",
  )(*operands)
  return dqkv, dscale_runs.sum(axis=0), dbias_runs.sum(axis=0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _attention(plan: _Plan, qkv, scale, bias, mask):
  return _forward(plan, qkv, scale, bias, mask)


def _attention_fwd(plan: _Plan, qkv, scale, bias, mask):
  if plan.backward == "xla":
    # Differentiated: XLA's forward, keeping what XLA's backward needs (its softmax), so the
    # step costs what the XLA path's does; undifferentiated calls still take the kernel.
    out, vjp = jax.vjp(functools.partial(_xla_attention, plan, mask=mask), qkv, scale, bias)
    return out, (vjp, mask)
  return _forward(plan, qkv, scale, bias, mask), (qkv, scale, bias, mask)


def _attention_bwd(plan: _Plan, residuals, dout):
  if plan.backward == "xla":
    vjp, mask = residuals
    return (*vjp(dout), None if mask is None else jnp.zeros_like(mask))
  qkv, scale, bias, mask = residuals
  dqkv, dscale, dbias = _backward(plan, qkv, scale, bias, mask, dout)
  return dqkv, dscale, dbias, None if mask is None else jnp.zeros_like(mask)


def _xla_attention(plan: _Plan, qkv, scale, bias, *, mask):
  """`window_attention.shifted_window_attention` on the kernel's flattened layout."""
  batch, _, _, heads, head_dim = qkv.shape
  out = window_attention.shifted_window_attention(
      qkv.reshape(batch, plan.height, plan.width, 3, heads, head_dim),
      scale,
      bias,
      mask,
      window=plan.window,
      shift=plan.shift,
  )
  return out.reshape(batch, plan.height * plan.width, heads, head_dim)


_attention.defvjp(_attention_fwd, _attention_bwd)


def _windows_per_program(total: int, heads: int) -> int:
  """A power of two dividing `total`, as large as `TARGET_BACKWARD_PROGRAMS` allows."""
  run = 1
  while (
      run < MAX_WINDOWS_PER_PROGRAM
      and total % (2 * run) == 0
      and heads * (total // (2 * run)) >= TARGET_BACKWARD_PROGRAMS
  ):
    run *= 2
  return run


def shifted_window_attention(
    qkv: jax.Array,
    scale: jax.Array,
    position_bias: jax.Array,
    mask: jax.Array | None = None,
    *,
    window: int,
    shift: int = 0,
    interpret: bool | None = None,
    block_rows: int | None = None,
    windows_per_program: int | None = None,
    backward: str | None = None,
) -> jax.Array:
  """Fused `window_attention.shifted_window_attention`: same arguments, same result.

  qkv: [B, H, W, 3, heads, d], q, k, v of every token of the map before normalisation (the qkv
    Linear's output reshaped, no copy); H and W multiples of `window`.
  scale: [heads] fp32, exp(min(logit_scale, ln 100)). position_bias: [heads, N, N] fp32 with
    N = window². mask: [nW, N, N] additive shift mask (nW = H·W / N), or None.
  window, shift: the window side and the cyclic shift, 0 ≤ shift < window.
  interpret: True: Pallas' interpreter; False: Triton; None: Triton when lowered for a CUDA GPU,
    the interpreter on any other platform.
  block_rows: query rows per block of S (a power of two >= 16 dividing N); None: min(N, 64).
  windows_per_program: windows one backward program sums over (must divide B·nW); None chooses.
  backward: one of `BACKWARDS`; None: `default_backward(N)`.
  Returns [B, H, W, heads, d] in qkv's dtype.
  """
  if qkv.ndim != 6 or qkv.shape[3] != 3:
    raise ValueError(
        f"shifted_window_attention: qkv must be [B, H, W, 3, heads, d], got {qkv.shape}."
    )
  batch, height, width, _, heads, head_dim = qkv.shape
  tokens = window * window
  if height % window or width % window or not 0 <= shift < window:
    raise ValueError(
        f"shifted_window_attention: a {height}×{width} map needs sides that are multiples of the "
        f"window {window}, and a shift in [0, {window}); got shift {shift}."
    )
  if not supports(tokens, head_dim):
    raise ValueError(
        f"shifted_window_attention: {tokens} tokens per window and head_dim {head_dim} do not "
        f"suit the kernel (both must be powers of two >= {MIN_DOT_SIDE}); use the XLA path."
    )
  num_windows = (height // window) * (width // window)
  if position_bias.shape != (heads, tokens, tokens):
    raise ValueError(
        f"shifted_window_attention: position_bias must be {(heads, tokens, tokens)}, "
        f"got {position_bias.shape}."
    )
  if mask is not None and mask.shape != (num_windows, tokens, tokens):
    raise ValueError(
        f"shifted_window_attention: mask must be {(num_windows, tokens, tokens)}, "
        f"got {mask.shape}."
    )
  rows = block_rows or min(tokens, MAX_BLOCK_ROWS)
  if not (supports(rows, head_dim) and tokens % rows == 0):
    raise ValueError(
        f"shifted_window_attention: block_rows={rows} must be a power of two >= "
        f"{MIN_DOT_SIDE} dividing the {tokens} tokens of a window."
    )
  total = batch * num_windows
  run = windows_per_program or _windows_per_program(total, heads)
  if total % run:
    raise ValueError(
        f"shifted_window_attention: windows_per_program={run} does not divide the "
        f"{total} windows of the batch."
    )
  backward = backward or default_backward(tokens)
  if backward not in BACKWARDS:
    raise ValueError(f"shifted_window_attention: backward={backward!r}, not one of {BACKWARDS}.")
  plan = _Plan(
      height=height,
      width=width,
      window=window,
      shift=shift,
      block_rows=rows,
      windows_per_program=run,
      interpret=interpret,
      backward=backward,
  )
  out = _attention(
      plan,
      qkv.reshape(batch, height * width, 3, heads, head_dim),
      scale.astype(jnp.float32).reshape(heads),
      position_bias.astype(jnp.float32),
      None if mask is None else jnp.asarray(mask, jnp.float32),
  )
  return out.reshape(batch, height, width, heads, head_dim)


def on_cuda(qkv, scale, position_bias, mask, *, window: int, shift: int, elsewhere):
  """`shifted_window_attention` where the program is lowered for a CUDA GPU, `elsewhere` (a
  function of the same arguments: the XLA path) on any other platform.

  The choice is made per lowering (`lax.platform_dependent`), not from `jax.default_backend()` at
  trace time: parameters initialised on the host CPU of a GPU machine (`steps.on_host`) or a
  program exported for CPU take `elsewhere` rather than the kernel's interpreter, and only the
  chosen branch is lowered, so XLA never sees the other. Lowering for several platforms at once (a
  multi-platform jax.export) fails, as Pallas lowers the Triton kernel for CUDA alone: such a
  program needs the XLA path.
  """
  geometry = dict(window=window, shift=shift)
  return jax.lax.platform_dependent(
      qkv,
      scale,
      position_bias,
      mask,
      cuda=functools.partial(shifted_window_attention, interpret=False, **geometry),
      default=functools.partial(elsewhere, **geometry),
  )

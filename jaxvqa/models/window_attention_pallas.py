"""SwinV2's shifted-window attention as one Pallas kernel (GPU, Triton lowering): logits never
leave the chip, and the windows are never cut out of the map.

The XLA path (`window_attention.shifted_window_attention`) rolls the map by −shift, copies it into
windows, writes every window's fp32 logits and softmax to memory and reads them back (200 MB per
SwinV2-T stage-0 block at batch 64, docs/PERFORMANCE.md), and copies the result back into the
map. Here one
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

Backward (`jax.custom_vjp`; the kernels are in `window_attention_pallas_backward`): the gradients
of q, k, v per window, and of the position bias and τ, which are shared by every window and so
are summed over a run of windows on chip and then over runs by XLA. A window of one block of
rows takes one kernel; a window of several (window 16) takes two, one over blocks of queries and
one over blocks of keys, so that no program holds more than one block's tiles. The mask is a
constant and gets no gradient.

What the Triton lowering asks for, and how this kernel meets it: every array a program loads or
stores has a power-of-two size (rows of N and d, both powers of two here); dots are 2-D with fp32
accumulation and need sides ≥ 16 — hence `supports`; a program never reads back what it stored
(on a GPU its threads would race). Windows of 256 tokens (window 16) are cut into blocks of
`MAX_BLOCK_ROWS` query rows so a block of S stays a register-sized tile; at window 16 the gradient
is XLA's by default (`default_backward` says why). The gathered rows cost what the earlier
window-layout kernel's rows did: a token's q, k or v for one head is d contiguous values either
way.

Lowered for any platform but a CUDA GPU, the same kernels run through Pallas' interpreter
(`interpret=True`, chosen when XLA lowers the program): that is how the tests check them on
CPU, and it is slow. `on_cuda` (SwinV2's default, "auto") takes the XLA path there instead.
"""

from __future__ import annotations

import functools

import jax
from jax.experimental import pallas as pl
import jax.numpy as jnp

from jaxvqa.models import window_attention
from jaxvqa.models import window_attention_pallas_backward
from jaxvqa.models import window_attention_tiles as tiles
from jaxvqa.models.window_attention_tiles import QKV, WHOLE

# Query rows per block of S: 64 × 256 fp32 logits is about the most a program keeps in registers.
MAX_BLOCK_ROWS = 64
# Triton's dot needs each side ≥ 16.
MIN_DOT_SIDE = 16
# Enough programs in the backward to fill an H200's 132 SMs several times over; past that, more
# windows per program only shrink the position-bias partials. Untuned: no other value was timed.
TARGET_BACKWARD_PROGRAMS = 1024
MAX_WINDOWS_PER_PROGRAM = 32

# Where the gradient comes from: the kernel's own backward, or XLA's (forward and backward, as
# the XLA path runs them; the kernel still serves calls that are not differentiated).
BACKWARDS = ("kernel", "xla")


def default_backward(tokens: int) -> str:
  """The backward for windows of `tokens` tokens: the kernel's where a window is one block of
  rows (window 8), XLA's for larger windows (window 16, configs/default.py's backbone).

  At window 16 the kernel's backward used to be one kernel carrying a [256, 256] fp32
  position-bias sum through its loop over windows: more than a thread's registers, so it spilled.
  It took 15.2 ms against XLA's 4.8 ms for SwinV2-T w16's first stage at batch 64, forward +
  backward, on an H100 (2026-12-07), and configs/default.py's training step ran 2.2× slower with
  it. It is now two kernels that hold one block's tiles each (`window_attention_pallas_backward`):
  6.2 ms at that stage, but over all of SwinV2-T w16's blocks still 0.91× XLA's forward + backward
  (27.0 against 24.5 ms, H100, 2026-12-08). So XLA's gradient serves there, and the forward stays
  the kernel's (1.48× XLA's over the blocks). `benchmarks/window_attention.py --window 16` times
  the kernel's backward beside XLA's.
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


def _forward_kernel(qkv_ref, scale_ref, bias_ref, *refs, plan: tiles.Plan):
  """One (window, head, block of R query rows). qkv_ref [B, H·W, 3, heads, d], the whole map;
  bias_ref, mask_ref [R, N]; out_ref [B, H·W, heads, d], the whole map."""
  mask_ref, out_ref = refs if len(refs) == 2 else (None, refs[0])
  window, head = pl.program_id(0), pl.program_id(1)
  start = pl.program_id(2) * plan.block_rows
  image, rows = tiles.window_rows(plan, window, start, plan.block_rows)
  _, keys = tiles.window_rows(plan, window, 0, plan.tokens)
  v = qkv_ref[image, keys, QKV["v"], head, :]
  p, _ = tiles.probabilities(
      tiles.unit(qkv_ref[image, rows, QKV["q"], head, :], v.dtype),
      tiles.unit(qkv_ref[image, keys, QKV["k"], head, :], v.dtype),
      scale_ref[...],
      bias_ref[...],
      None if mask_ref is None else mask_ref[...],
  )
  out_ref[image, rows, head, :] = tiles.dot(p.astype(v.dtype), v, (1, 0)).astype(out_ref.dtype)


def _forward(plan: tiles.Plan, qkv, scale, bias, mask):
  """qkv [B, H·W, 3, heads, d] → [B, H·W, heads, d]."""
  batch, area, _, heads, head_dim = qkv.shape
  rows, tokens = plan.block_rows, plan.tokens
  in_specs = [
      WHOLE,
      pl.BlockSpec((None,), lambda w, h, r: (h,)),
      pl.BlockSpec((None, rows, tokens), lambda w, h, r: (h, r, 0)),
  ]
  operands = [qkv, scale, bias]
  if mask is not None:
    in_specs.append(
        pl.BlockSpec((None, rows, tokens), lambda w, h, r: (w % plan.num_windows, r, 0))
    )
    operands.append(mask)
  return tiles.pallas_call(
      plan,
      _forward_kernel,
      tile_values=rows * tokens,
      grid=(batch * plan.num_windows, heads, plan.blocks),
      in_specs=in_specs,
      out_specs=WHOLE,
      out_shape=jax.ShapeDtypeStruct((batch, area, heads, head_dim), qkv.dtype),
      name="swinv2_window_attention_fwd",
  )(*operands)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _attention(plan: tiles.Plan, qkv, scale, bias, mask):
  return _forward(plan, qkv, scale, bias, mask)


def _attention_fwd(plan: tiles.Plan, qkv, scale, bias, mask):
  if plan.backward == "xla":
    # Differentiated: XLA's forward, keeping what XLA's backward needs (its softmax), so the
    # step costs what the XLA path's does; undifferentiated calls still take the kernel.
    out, saved = jax.vjp(functools.partial(_xla_attention, plan, mask=mask), qkv, scale, bias)
  else:
    out, saved = _forward(plan, qkv, scale, bias, mask), (qkv, scale, bias)
  return out, (saved, mask)


def _attention_bwd(plan: tiles.Plan, residuals, dout):
  saved, mask = residuals
  if plan.backward == "xla":
    gradients = saved(dout)
  else:
    gradients = window_attention_pallas_backward.backward(plan, *saved, mask, dout)
  return (*gradients, None if mask is None else jnp.zeros_like(mask))


def _xla_attention(plan: tiles.Plan, qkv, scale, bias, *, mask):
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
  plan = tiles.Plan(
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

"""The gradients of the fused window attention (`window_attention_pallas`), as Pallas kernels.

A window of one block of rows (window 8: N = 64 rows, one block) takes one kernel,
`_one_block_kernel`. A program takes a run of `windows_per_program` windows of one head,
recomputes each window's S from q and k, writes the gradients of q, k and v, and sums the
gradients of the position bias and of τ over its windows on chip; XLA adds the runs' partials.

A window of several blocks (window 16: 256 rows in blocks of 64) takes two kernels, so that no
program holds more than one block's tiles. Kept in one kernel, the bias sum alone is a
[256, 256] fp32 tile, more than a thread's registers: that form spilled and was 3.2× slower than
XLA's backward on an H100.
- `_query_kernel`, per (head, block of query rows, run of windows): the rows' whole softmax, dq,
  the sums for the bias and τ, and per row the softmax's log-normaliser and D = Σ_j P·dP.
- `_key_kernel`, per (window, head, block of keys): dk and dv, from each query block's tile of S
  rebuilt from q, k and the first kernel's log-normalisers (FlashAttention-2's backward does the
  same). It writes into the first kernel's gradient buffer (aliased), so the q, k and v
  gradients meet without a copy.

The mask is a constant and gets no gradient.
"""

from __future__ import annotations

import jax
from jax.experimental import pallas as pl
import jax.numpy as jnp

from jaxvqa.models import window_attention_tiles as tiles
from jaxvqa.models.window_attention_tiles import QKV, WHOLE


def backward(plan: tiles.Plan, qkv, scale, bias, mask, dout):
  """Cotangents of qkv [B, H·W, 3, heads, d], scale [heads] and bias [heads, N, N], from dout
  [B, H·W, heads, d]."""
  kernels = _one_block if plan.blocks == 1 else _two_kernels
  dqkv, dbias_runs, dscale_runs = kernels(plan, qkv, scale, bias, mask, dout)
  return dqkv, dscale_runs.sum(axis=0), dbias_runs.sum(axis=0)


def _softmax_vjp(p, dp):
  """(dL/dS [R, N], Σ_j P·dP [R]) from the softmax P and dL/dP, both [R, N] over whole rows; the
  key kernel rebuilds dS from the row sums."""
  row_dot = jnp.sum(p * dp, axis=1)
  return p * (dp - row_dot[:, None]), row_dot


def _sum_over_run(plan: tiles.Plan, first_window, per_window, dbias_ref, dscale_ref) -> None:
  """Runs `per_window(window)` → (dS, its τ gradient) over a run of `windows_per_program` windows
  from `first_window`, and writes the sums: dbias_ref (dS's shape) and dscale_ref []."""

  def one_window(g, sums):
    ds, dscale = per_window(first_window + g)
    return sums[0] + ds, sums[1] + dscale

  zeros = (jnp.zeros(dbias_ref.shape, jnp.float32), jnp.zeros((), jnp.float32))
  dbias, dscale = jax.lax.fori_loop(0, plan.windows_per_program, one_window, zeros)
  dbias_ref[...] = dbias
  dscale_ref[...] = dscale


def _one_block_kernel(qkv_ref, dout_ref, scale_ref, bias_ref, *refs, plan: tiles.Plan):
  """One (head, run of G windows). qkv_ref [B, H·W, 3, heads, d] and dout_ref [B, H·W, heads, d],
  whole maps; bias_ref [N, N]; mask_ref [nW, N, N]. Writes dqkv_ref (qkv's shape, whole) and the
  run's sums dbias_ref [N, N], dscale_ref []."""
  mask_ref = refs[0] if len(refs) == 4 else None
  dqkv_ref, dbias_ref, dscale_ref = refs[-3:]
  head = pl.program_id(0)
  scale, bias = scale_ref[...], bias_ref[...]

  def one_window(window):
    image, rows = tiles.window_rows(plan, window, 0, plan.tokens)
    q, k, v = (qkv_ref[image, rows, QKV[name], head, :] for name in "qkv")
    dout = dout_ref[image, rows, head, :]
    mask = None if mask_ref is None else mask_ref[window % plan.num_windows]
    q_hat, k_hat = tiles.unit(q, v.dtype), tiles.unit(k, v.dtype)
    p, cos = tiles.probabilities(q_hat, k_hat, scale, bias, mask)
    ds, _ = _softmax_vjp(p, tiles.dot(dout, v, (1, 1)))
    dcos = (scale * ds).astype(v.dtype)
    gradients = {
        "q": tiles.l2_normalize_vjp(q, tiles.dot(dcos, k_hat, (1, 0))),
        "k": tiles.l2_normalize_vjp(k, tiles.dot(dcos, q_hat, (0, 0))),
        "v": tiles.dot(p.astype(v.dtype), dout, (0, 0)),
    }
    for name, gradient in gradients.items():
      dqkv_ref[image, rows, QKV[name], head, :] = gradient.astype(dqkv_ref.dtype)
    return ds, jnp.sum(ds * cos)

  first_window = pl.program_id(1) * plan.windows_per_program
  _sum_over_run(plan, first_window, one_window, dbias_ref, dscale_ref)


def _one_block(plan: tiles.Plan, qkv, scale, bias, mask, dout):
  batch, _, _, heads, _ = qkv.shape
  tokens = plan.tokens
  runs = batch * plan.num_windows // plan.windows_per_program
  in_specs = [
      WHOLE,
      WHOLE,
      pl.BlockSpec((None,), lambda h, c: (h,)),
      pl.BlockSpec((None, tokens, tokens), lambda h, c: (h, 0, 0)),
  ]
  operands = [qkv, dout, scale, bias]
  if mask is not None:
    in_specs.append(WHOLE)
    operands.append(mask)
  return tiles.pallas_call(
      plan,
      _one_block_kernel,
      tile_values=tokens * tokens,
      grid=(heads, runs),
      in_specs=in_specs,
      out_specs=[
          WHOLE,
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


def _query_kernel(qkv_ref, dout_ref, scale_ref, bias_ref, *refs, plan: tiles.Plan):
  """One (head, block of R query rows, run of G windows). bias_ref [R, N]; mask_ref [nW, N, N].
  Writes the q slot of dqkv_ref (qkv's shape, whole), stats_ref [B, H·W, 2, heads] (whole: per
  row the softmax's log-normaliser and D = Σ_j P·dP), and the run's sums over its rows,
  dbias_ref [R, N] and dscale_ref []."""
  mask_ref = refs[0] if len(refs) == 5 else None
  dqkv_ref, stats_ref, dbias_ref, dscale_ref = refs[-4:]
  head, start = pl.program_id(0), pl.program_id(1) * plan.block_rows
  scale, bias = scale_ref[...], bias_ref[...]

  def one_window(window):
    image, keys = tiles.window_rows(plan, window, 0, plan.tokens)
    _, rows = tiles.window_rows(plan, window, start, plan.block_rows)
    k, v = qkv_ref[image, keys, QKV["k"], head, :], qkv_ref[image, keys, QKV["v"], head, :]
    q, dout = qkv_ref[image, rows, QKV["q"], head, :], dout_ref[image, rows, head, :]
    mask = None
    if mask_ref is not None:
      mask = mask_ref[window % plan.num_windows, pl.ds(start, plan.block_rows), :]
    k_hat = tiles.unit(k, v.dtype)
    s, cos = tiles.logits(tiles.unit(q, v.dtype), k_hat, scale, bias, mask)
    p, log_normaliser = tiles.softmax(s)
    ds, row_dot = _softmax_vjp(p, tiles.dot(dout, v, (1, 1)))
    dq = tiles.dot((scale * ds).astype(v.dtype), k_hat, (1, 0))
    dqkv_ref[image, rows, QKV["q"], head, :] = tiles.l2_normalize_vjp(q, dq).astype(dqkv_ref.dtype)
    stats_ref[image, rows, 0, head] = log_normaliser
    stats_ref[image, rows, 1, head] = row_dot
    return ds, jnp.sum(ds * cos)

  first_window = pl.program_id(2) * plan.windows_per_program
  _sum_over_run(plan, first_window, one_window, dbias_ref, dscale_ref)


def _key_kernel(qkv_ref, dout_ref, stats_ref, scale_ref, bias_ref, *refs, plan: tiles.Plan):
  """One (window, head, block of R keys). stats_ref: `_query_kernel`'s; bias_ref, mask_ref
  [N, R], the block's columns. Fills the k and v slots of dqkv_ref, the query kernel's gradient
  buffer (refs[-2] is the same buffer as this call's input, untouched)."""
  mask_ref = refs[0] if len(refs) == 3 else None
  dqkv_ref = refs[-1]
  window, head = pl.program_id(0), pl.program_id(1)
  rows_per_block = plan.block_rows
  image, keys = tiles.window_rows(plan, window, pl.program_id(2) * rows_per_block, rows_per_block)
  k, v = qkv_ref[image, keys, QKV["k"], head, :], qkv_ref[image, keys, QKV["v"], head, :]
  k_hat, scale = tiles.unit(k, v.dtype), scale_ref[...]
  dk_hat = dv = jnp.zeros(k.shape, jnp.float32)
  for start in range(0, plan.tokens, rows_per_block):
    _, rows = tiles.window_rows(plan, window, start, rows_per_block)
    q, dout = qkv_ref[image, rows, QKV["q"], head, :], dout_ref[image, rows, head, :]
    q_hat = tiles.unit(q, v.dtype)
    block = pl.ds(start, rows_per_block)
    mask = None if mask_ref is None else mask_ref[block, :]
    s, _ = tiles.logits(q_hat, k_hat, scale, bias_ref[block, :], mask)
    p = jnp.exp(s - stats_ref[image, rows, 0, head][:, None])
    ds = p * (tiles.dot(dout, v, (1, 1)) - stats_ref[image, rows, 1, head][:, None])
    dv += tiles.dot(p.astype(v.dtype), dout, (0, 0))
    dk_hat += tiles.dot((scale * ds).astype(v.dtype), q_hat, (0, 0))
  dqkv_ref[image, keys, QKV["k"], head, :] = tiles.l2_normalize_vjp(k, dk_hat).astype(
      dqkv_ref.dtype
  )
  dqkv_ref[image, keys, QKV["v"], head, :] = dv.astype(dqkv_ref.dtype)


def _two_kernels(plan: tiles.Plan, qkv, scale, bias, mask, dout):
  batch, area, _, heads, _ = qkv.shape
  rows, tokens, blocks = plan.block_rows, plan.tokens, plan.blocks
  runs = batch * plan.num_windows // plan.windows_per_program
  query_specs = [
      WHOLE,
      WHOLE,
      pl.BlockSpec((None,), lambda h, r, c: (h,)),
      pl.BlockSpec((None, rows, tokens), lambda h, r, c: (h, r, 0)),
  ]
  operands = [qkv, dout, scale, bias]
  if mask is not None:
    query_specs.append(WHOLE)
    operands.append(mask)
  dqkv, stats, dbias_runs, dscale_runs = tiles.pallas_call(
      plan,
      _query_kernel,
      tile_values=rows * tokens,
      grid=(heads, blocks, runs),
      in_specs=query_specs,
      out_specs=[
          WHOLE,
          WHOLE,
          pl.BlockSpec((None, None, rows, tokens), lambda h, r, c: (c, h, r, 0)),
          pl.BlockSpec((None, None, None), lambda h, r, c: (c, h, r)),
      ],
      out_shape=[
          jax.ShapeDtypeStruct(qkv.shape, qkv.dtype),
          jax.ShapeDtypeStruct((batch, area, 2, heads), jnp.float32),
          jax.ShapeDtypeStruct((runs, heads, tokens, tokens), jnp.float32),
          jax.ShapeDtypeStruct((runs, heads, blocks), jnp.float32),
      ],
      name="swinv2_window_attention_bwd_queries",
  )(*operands)

  columns = lambda w, h, c: (h, 0, c)
  key_specs = [WHOLE, WHOLE, WHOLE, pl.BlockSpec((None,), lambda w, h, c: (h,))]
  key_specs.append(pl.BlockSpec((None, tokens, rows), columns))
  operands = [qkv, dout, stats, scale, bias]
  if mask is not None:
    key_specs.append(
        pl.BlockSpec((None, tokens, rows), lambda w, h, c: (w % plan.num_windows, 0, c))
    )
    operands.append(mask)
  dqkv = tiles.pallas_call(
      plan,
      _key_kernel,
      tile_values=rows * rows,
      grid=(batch * plan.num_windows, heads, blocks),
      in_specs=[*key_specs, WHOLE],
      out_specs=WHOLE,
      out_shape=jax.ShapeDtypeStruct(qkv.shape, qkv.dtype),
      input_output_aliases={len(operands): 0},
      name="swinv2_window_attention_bwd_keys",
  )(*operands, dqkv)
  return dqkv, dbias_runs, dscale_runs.sum(axis=-1)

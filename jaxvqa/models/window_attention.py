"""SwinV2's window attention in plain XLA: the reference path, and the one off CUDA.

`cosine_window_attention` is the attention of a batch of windows; `shifted_window_attention` is
that in the windows of a map rolled by −shift, as SwinV2's blocks attend. The fused kernel
(`window_attention_pallas`) has the second's signature and result, and uses it for its backward
where its own backward is slower.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxvqa.models import windows
from jaxvqa.models.l2 import l2_normalize


def cosine_window_attention(
    qkv: jax.Array, scale: jax.Array, position_bias: jax.Array, mask: jax.Array | None
) -> jax.Array:
  """softmax(scale·q̂·k̂ᵀ + position_bias + mask)·v per window and head; the XLA path.

  qkv: [B, nW, N, 3, heads, head_dim]; scale: [heads] fp32, the clamped exp(logit_scale);
  position_bias: [heads, N, N]; mask: [nW, N, N] or None. Returns [B, nW, N, heads, head_dim].
  Logits and softmax in fp32. The attention itself is `jax.nn.dot_product_attention(q, k, v,
  bias, scale=1.0)` with a leading window axis.
  """
  q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
  # Normalising in fp32: a bf16 norm of a 32-wide head loses the cosine's precision.
  q = (l2_normalize(q) * scale.reshape(-1, 1)).astype(qkv.dtype)
  k = l2_normalize(k).astype(qkv.dtype)
  bias = position_bias if mask is None else position_bias + mask[:, None, :, :]
  logits = jnp.einsum("...qhd,...khd->...hqk", q, k, preferred_element_type=jnp.float32)
  weights = jax.nn.softmax(logits + bias, axis=-1).astype(v.dtype)
  return jnp.einsum("...hqk,...khd->...qhd", weights, v)


def shifted_window_attention(
    qkv: jax.Array,
    scale: jax.Array,
    position_bias: jax.Array,
    mask: jax.Array | None,
    *,
    window: int,
    shift: int = 0,
) -> jax.Array:
  """`cosine_window_attention` in the windows of a map rolled by −shift; the XLA path.

  qkv: [B, H, W, 3, heads, head_dim], H and W multiples of `window`; mask: [nW, N, N] or None.
  Returns [B, H, W, heads, head_dim]: the map is rolled, cut into windows, attended, put back
  and rolled back (HF's order of operations). `window_attention_pallas.shifted_window_attention`
  is the fused kernel with this signature, which never makes the rolled or partitioned copies.
  """
  batch, height, width, _, heads, head_dim = qkv.shape
  if shift:
    qkv = jnp.roll(qkv, (-shift, -shift), axis=(1, 2))
  partitioned = windows.window_partition(qkv.reshape(batch, height, width, -1), window)
  attended = cosine_window_attention(
      partitioned.reshape(*partitioned.shape[:-1], 3, heads, head_dim), scale, position_bias, mask
  )
  out = windows.window_reverse(attended.reshape(*attended.shape[:-2], -1), window, height, width)
  if shift:
    out = jnp.roll(out, (shift, shift), axis=(1, 2))
  return out.reshape(batch, height, width, heads, head_dim)

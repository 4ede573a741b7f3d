"""Unit vectors along the last axis: one definition for attention, fusion tokens and embeddings."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """x / max(‖x‖, eps) along the last axis, in float32 (torch `F.normalize`'s floor on the norm).

  The floor is applied to the squared norm: zero vectors do occur (keys of padded tokens, whose
  k bias is zero; embeddings of padded batch entries), and the gradient of a norm taken with sqrt
  is NaN there.
  """
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps * eps))

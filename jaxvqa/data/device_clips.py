"""Model input cut on the accelerator from decoded frames: native fragments, the paper's resize, flips.

    frames uint8 [N, F, H, W, 3] (device) + a draw of indices (host, numpy)
      ──gather_clips──▶ uint8 [K, B, T, S, S, 3]

The host draws only integers (which encode, which stored frames, fragment origins, flips), so a
training step moves a few kilobytes to the device, never pixels. Fragment origins come from
`video.fragment_origins`, the function `jaxvqa score` and `eval.py` cut fragments with, so
training sees what scoring sees (tests/test_kfold.py checks the two paths agree pixel for pixel).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxvqa.data import video


@dataclasses.dataclass(frozen=True)
class Layout:
  """Static facts of the sampled clips."""

  num_frames: int  # T sampled of the F stored
  size: int  # S: model input side
  grid: int  # fragment cells per side
  height: int  # stored frame size
  width: int
  align: int = 1  # fragment origins at multiples of this many px (video.fragment_origins)


def evaluation_draw(indices: np.ndarray, layout: Layout, stored: int) -> dict[str, np.ndarray]:
  """Deterministic sampling of `indices` [E], as eval.py and `jaxvqa score` sample: segment-centre
  frames, fragments at cell centres, no flip. Arrays with a leading fold axis of 1."""
  patch = layout.size // layout.grid
  count = len(indices)
  picks = video.sample_frame_indices(stored, layout.num_frames, train=False, rng=None)
  return {
      "video": indices[None].astype(np.int32),
      "picks": np.broadcast_to(picks, (1, count, layout.num_frames)).astype(np.int32),
      "rows": np.broadcast_to(
          video.fragment_origins(layout.height, layout.grid, patch, None, align=layout.align),
          (1, count, layout.grid),
      ).astype(np.int32),
      "cols": np.broadcast_to(
          video.fragment_origins(layout.width, layout.grid, patch, None, align=layout.align),
          (1, count, layout.grid),
      ).astype(np.int32),
      "flip": np.zeros((1, count), bool),
  }


def cut_fragments(clip: jax.Array, rows: jax.Array, cols: jax.Array, patch: int) -> jax.Array:
  """[T, H, W, 3] → [T, g·patch, g·patch, 3]: the native-pixel windows at origins rows/cols [g]."""
  offsets = jnp.arange(patch)
  row_index = (rows[:, None] + offsets).reshape(-1)
  col_index = (cols[:, None] + offsets).reshape(-1)
  return jnp.take(jnp.take(clip, row_index, axis=1), col_index, axis=2)


def resize_centre(clip: jax.Array, size: int) -> jax.Array:
  """[T, H, W, 3] → [T, S, S, 3]: the paper's short-side resize and centre crop (bicubic,
  antialiased), the resampling the native-pixel modes avoid; kept for the ablation."""
  height, width = clip.shape[1:3]
  side = min(height, width)
  top, left = (height - side) // 2, (width - side) // 2
  square = clip[:, top : top + side, left : left + side].astype(jnp.float32)
  resized = jax.image.resize(square, (clip.shape[0], size, size, 3), "bicubic", antialias=True)
  return jnp.clip(jnp.round(resized), 0, 255).astype(jnp.uint8)


def gather_clips(
    frames: jax.Array, draw: dict[str, jax.Array], layout: Layout, mode: str
) -> jax.Array:
  """frames uint8 [N, F, H, W, 3] (on device) + a draw with fold axis K → uint8 [K, B, T, S, S, 3]."""
  patch = layout.size // layout.grid
  frames = jnp.asarray(frames)

  def one(index, picks, rows, cols, flip):
    clip = frames[index][picks]  # [T, H, W, 3]
    if mode == "fragments":
      clip = cut_fragments(clip, rows, cols, patch)
    else:
      clip = resize_centre(clip, layout.size)
    return jnp.where(flip, clip[:, :, ::-1], clip)

  return jax.vmap(jax.vmap(one))(
      draw["video"], draw["picks"], draw["rows"], draw["cols"], draw["flip"]
  )

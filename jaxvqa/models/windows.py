"""Window geometry of SwinV2 (numpy and array reshapes, no parameters): which window and shift
each stage uses, partitioning a map into windows and back, the relative-position tables the
continuous position bias reads, and the additive mask of a cyclically shifted map.

Used by `jaxvqa.models.swinv2` and the fused kernel's tests and benchmark.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# Added to the logits of token pairs from different regions of a shifted window (timm's value).
MASK_VALUE = -100.0


class StageWindow(NamedTuple):
  """Window side and cyclic shift (for the odd blocks) of one stage; static Python ints."""

  size: int
  shift: int


def stage_window(nominal_height: int, window_size: int) -> StageWindow:
  """HF's rule: a stage no taller than the window gets one window of its own height, unshifted."""
  if nominal_height <= window_size:
    return StageWindow(size=nominal_height, shift=0)
  return StageWindow(size=window_size, shift=window_size // 2)


def window_partition(x: jax.Array, window: int) -> jax.Array:
  """[B, H, W, C] with H, W multiples of `window` → [B, nW, window², C], windows row-major."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // window, window, w // window, window, c)
  x = x.transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, (h // window) * (w // window), window * window, c)


def window_reverse(windows: jax.Array, window: int, height: int, width: int) -> jax.Array:
  """[B, nW, window², C] → [B, height, width, C]; inverse of `window_partition`."""
  b, _, _, c = windows.shape
  x = windows.reshape(b, height // window, width // window, window, window, c)
  x = x.transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, height, width, c)


def relative_coords_table(window: int, pretrained_window: int) -> np.ndarray:
  """[(2·window−1)², 2] float32: log-spaced relative offsets (dy, dx), the position-bias MLP input.

  Offsets in [−(window−1), window−1] are divided by (pretrained_window − 1) when a pretraining
  window is given (so a model fine-tuned at a larger window sees the coordinates it learned on),
  else by (window − 1), scaled to [−8, 8], then mapped through sign·log2(1+|x|)/log2(8).
  """
  offsets = np.arange(-(window - 1), window, dtype=np.float32)
  table = np.stack(np.meshgrid(offsets, offsets, indexing="ij"), axis=-1)
  if pretrained_window > 0:
    table = table / (pretrained_window - 1)
  elif window > 1:
    table = table / (window - 1)
  table = table * 8.0
  table = np.sign(table) * np.log2(np.abs(table) + 1.0) / np.log2(8.0)
  return table.reshape(-1, 2).astype(np.float32)


def relative_position_index(window: int) -> np.ndarray:
  """[window², window²] int32: row of `relative_coords_table` for each (query, key) pair."""
  coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij")).reshape(2, -1)
  relative = coords[:, :, None] - coords[:, None, :] + (window - 1)
  return (relative[0] * (2 * window - 1) + relative[1]).astype(np.int32)


def shifted_window_mask(height: int, width: int, window: StageWindow) -> np.ndarray | None:
  """[nW, window², window²] float32 additive mask (0 or −100) for a cyclically shifted map.

  After the roll, a window at the bottom/right edge holds tokens from up to three regions per
  axis that were not neighbours before it; they must not attend to each other. `height` and
  `width` are the padded map's. None when the stage does not shift.
  """
  if window.shift == 0:
    return None

  def regions(n: int) -> np.ndarray:
    idx = np.arange(n)
    return (idx >= n - window.size).astype(np.int32) + (idx >= n - window.shift).astype(np.int32)

  region = regions(height)[:, None] * 3 + regions(width)[None, :]
  region_windows = window_partition(region[None, :, :, None], window.size)[0, :, :, 0]
  different = region_windows[:, None, :] != region_windows[:, :, None]
  return np.where(different, MASK_VALUE, 0.0).astype(np.float32)


def pad_bottom_right(x: jax.Array, multiple: int) -> jax.Array:
  """[B, H, W, C] → [B, ceil(H/m)·m, ceil(W/m)·m, C], zeros appended (as HF pads)."""
  _, h, w, _ = x.shape
  pad_h, pad_w = -h % multiple, -w % multiple
  if pad_h == 0 and pad_w == 0:
    return x
  return jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))

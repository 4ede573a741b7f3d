"""Multi-stage (spatial) fusion and temporal fusion: frame maps → frame tokens → video embedding.

Spatial fusion follows the authors' SF-IQA structure (docs/METHOD.md): each SwinV2 stage map is
channel-L2-normalised, L2-pooled with a 3×3 Hann window, dropped out and average-pooled to a
`grid`×`grid` map; the stage maps are joined into `grid²` tokens that a few post-norm transformer
layers (2-D sine positions added to queries and keys) fuse into one feature per frame.

Two token layouts are offered:

- ``"channel_concat"`` (the authors'): the stage maps are concatenated along channels, so each of the
  `grid²` tokens carries all stages at one position (2112 channels for SwinV2-T).
- ``"stage_tokens"``: each stage is projected to a common width and tagged with a learned stage
  embedding; the stages' tokens are concatenated along the sequence (4·grid² tokens). Cheaper when
  the stage widths are large.

Where the authors' code reshapes token tensors without a transpose and drops the attention residual,
we keep the correct spatial layout and the residual (docs/METHOD.md notes this).

Temporal fusion (docs/METHOD.md) projects frame features to `width`, adds a learned temporal
position embedding, runs pre-norm transformer layers over the frames of each video with a key mask
for padded frames, and takes the masked mean: padding frames never changes a video's embedding.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvqa.models.l2 import l2_normalize

TOKEN_LAYOUTS = ("channel_concat", "stage_tokens")


def hann_l2_pool(x: jax.Array) -> jax.Array:
  """L2 pooling: sqrt(depthwise 3×3 Hann blur of x²), stride 1, 'same' size.

  x: [N, H, W, C] → [N, H, W, C]. The filter is [.5, 1, .5] ⊗ [.5, 1, .5] normalised to sum 1
  (DISTS' L2pooling); the small epsilon keeps the sqrt's gradient finite at zero.
  """
  taps = np.array([0.5, 1.0, 0.5], dtype=np.float32)
  window = np.outer(taps, taps)
  window /= window.sum()
  channels = x.shape[-1]
  kernel = jnp.broadcast_to(jnp.asarray(window, x.dtype)[:, :, None, None], (3, 3, 1, channels))
  blurred = jax.lax.conv_general_dilated(
      x * x,
      kernel,
      window_strides=(1, 1),
      padding="SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
      feature_group_count=channels,
  )
  return jnp.sqrt(blurred + 1e-12)


def _adaptive_bins(size: int, bins: int) -> np.ndarray:
  """[bins, size] averaging matrix with PyTorch adaptive_avg_pool's bin edges."""
  matrix = np.zeros((bins, size), np.float32)
  for i in range(bins):
    start = (i * size) // bins
    end = -((-(i + 1) * size) // bins)  # ceil
    matrix[i, start:end] = 1.0 / (end - start)
  return matrix


def adaptive_avg_pool(x: jax.Array, grid: int) -> jax.Array:
  """Average-pool [N, H, W, C] to [N, grid, grid, C] (PyTorch adaptive_avg_pool2d bins; H < grid repeats)."""
  rows = jnp.asarray(_adaptive_bins(x.shape[1], grid), x.dtype)
  cols = jnp.asarray(_adaptive_bins(x.shape[2], grid), x.dtype)
  return jnp.einsum("gh,nhwc,kw->ngkc", rows, x, cols)


def sine_positions_2d(grid: int, width: int, temperature: float = 10000.0) -> np.ndarray:
  """DETR's normalised 2-D sine position code: [grid*grid, width], width even.

  The first half of the channels encodes the row, the second half the column, each as interleaved
  sin/cos of the position (scaled to (0, 2π]) at geometric frequencies.
  """
  if width % 2:
    raise ValueError(f"sine position width must be even, got {width}")
  per_axis = width // 2
  coords = (np.arange(grid, dtype=np.float64) + 1.0) / grid * 2 * np.pi
  freqs = temperature ** (2 * (np.arange(per_axis) // 2) / per_axis)
  angles = coords[:, None] / freqs[None, :]  # [grid, per_axis]
  code = np.where(np.arange(per_axis) % 2 == 0, np.sin(angles), np.cos(angles))
  rows = np.repeat(code[:, None, :], grid, axis=1)
  cols = np.repeat(code[None, :, :], grid, axis=0)
  return np.concatenate([rows, cols], axis=-1).reshape(grid * grid, width).astype(np.float32)


class TransformerLayer(nn.Module):
  """One transformer encoder layer, post-norm or pre-norm.

  x: [N, L, D], positions (optional): [L, D] or [N, L, D] added to queries and keys only,
  key_mask (optional): [N, L] bool, False for padding → [N, L, D].
  """

  # Declarative data: module fields alike in shape to models/vqa.py's IQAModel.
  num_heads: int
  mlp_dim: int
  dropout: float = 0.0
  pre_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, positions=None, key_mask=None, *, train: bool = False):
    deterministic = not train
    attention_mask = (
        None
        if key_mask is None
        else nn.make_attention_mask(jnp.ones(key_mask.shape, bool), key_mask)
    )

    def attend(h):
      qk = h if positions is None else h + positions.astype(h.dtype)
      out = nn.MultiHeadDotProductAttention(
          num_heads=self.num_heads,
          dtype=self.dtype,
          dropout_rate=self.dropout,
          deterministic=deterministic,
          name="attention",
      )(qk, qk, h, mask=attention_mask)
      return nn.Dropout(self.dropout)(out, deterministic=deterministic)

    def feed_forward(h):
      h = nn.Dense(self.mlp_dim, dtype=self.dtype, name="mlp_in")(h)
      h = nn.gelu(h)
      h = nn.Dropout(self.dropout)(h, deterministic=deterministic)
      h = nn.Dense(x.shape[-1], dtype=self.dtype, name="mlp_out")(h)
      return nn.Dropout(self.dropout)(h, deterministic=deterministic)

    norm_attention = nn.LayerNorm(dtype=self.dtype, name="norm_attention")
    norm_mlp = nn.LayerNorm(dtype=self.dtype, name="norm_mlp")
    if self.pre_norm:
      x = x + attend(norm_attention(x))
      return x + feed_forward(norm_mlp(x))
    x = norm_attention(x + attend(x))
    return norm_mlp(x + feed_forward(x))


class MultiStageFusion(nn.Module):
  """Fuses the four SwinV2 stage maps of each frame into one frame feature.

  stages: sequence of [N, h_i, w_i, C_i] → [N, out_dim + C_last], where N counts frames.
  The result is the fused feature projected to `out_dim`, concatenated with the mean of the last
  stage map (docs/METHOD.md: 768 + 768 = 1536 for SwinV2-T).
  """

  # Declarative data: field lists alike in shape to TemporalFusion's and losses.LossWeights'.
  grid: int = 8
  num_layers: int = 2
  num_heads: int = 16
  mlp_dim: int = 64
  dropout: float = 0.5
  feature_dropout: float = 0.1
  out_dim: int = 768
  token_layout: str = "channel_concat"
  stage_width: int = 256  # common width for token_layout="stage_tokens"
  # LayerNorm each pooled stage token. The authors' unit-norm-then-pool tokens are small (|x| ≈ 0.03
  # per channel) next to the layers' biases, so a randomly initialised model sees nearly the same
  # token for every frame; pretrained features survive that, random ones learn slowly (docs/METHOD.md).
  token_norm: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, stages: Sequence[jax.Array], *, train: bool = False) -> jax.Array:
    if self.token_layout not in TOKEN_LAYOUTS:
      raise ValueError(f"token_layout must be one of {TOKEN_LAYOUTS}, got {self.token_layout!r}")
    pooled = []
    for index, stage in enumerate(stages):
      stage = l2_normalize(stage)
      stage = hann_l2_pool(stage)
      stage = nn.Dropout(self.feature_dropout)(stage, deterministic=not train)
      stage = adaptive_avg_pool(stage, self.grid)
      if self.token_norm:
        stage = nn.LayerNorm(name=f"token_norm_{index}")(stage)
      pooled.append(stage.astype(self.dtype))
    frames = pooled[0].shape[0]

    if self.token_layout == "channel_concat":
      tokens = jnp.concatenate(pooled, axis=-1).reshape(frames, self.grid * self.grid, -1)
      positions = sine_positions_2d(self.grid, tokens.shape[-1])
    else:
      stage_tokens = []
      for index, stage in enumerate(pooled):
        projected = nn.Dense(self.stage_width, dtype=self.dtype, name=f"stage_projection_{index}")(
            stage
        )
        stage_embedding = self.param(
            f"stage_embedding_{index}", nn.initializers.normal(0.02), (self.stage_width,)
        )
        stage_tokens.append(projected.reshape(frames, -1, self.stage_width) + stage_embedding)
      tokens = jnp.concatenate(stage_tokens, axis=1)
      positions = np.tile(sine_positions_2d(self.grid, self.stage_width), (len(pooled), 1))

    for index in range(self.num_layers):
      tokens = TransformerLayer(
          num_heads=self.num_heads,
          mlp_dim=self.mlp_dim,
          dropout=self.dropout,
          pre_norm=False,
          dtype=self.dtype,
          name=f"layer_{index}",
      )(tokens, jnp.asarray(positions), train=train)
    fused = nn.Dense(self.out_dim, dtype=self.dtype, name="out_projection")(tokens.mean(axis=1))
    last_stage_mean = stages[-1].astype(self.dtype).mean(axis=(1, 2))
    return jnp.concatenate([fused, last_stage_mean], axis=-1)


def masked_frame_mean(x: jax.Array, frame_mask: jax.Array) -> jax.Array:
  """[B, T, D] float32 per-frame values, [B, T] bool (False = padding) → [B, D]: the mean over the
  real frames (0 for a video with none)."""
  weights = frame_mask.astype(jnp.float32)[..., None]
  return (x * weights).sum(axis=1) / jnp.maximum(weights.sum(axis=1), 1.0)


class TemporalFusion(nn.Module):
  """Transformer over the frames of each video: [B, T, F] frame features + [B, T] mask → [B, width].

  Padded frames (mask False) are excluded as attention keys and from the final mean, so a video
  padded to a longer T embeds exactly as the unpadded one.
  """

  # Declarative data: fields alike in shape to MultiStageFusion's.
  width: int = 768
  num_layers: int = 2
  num_heads: int = 8
  mlp_ratio: float = 4.0
  dropout: float = 0.1
  max_frames: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, frame_features: jax.Array, frame_mask: jax.Array, *, train: bool = False):
    num_frames = frame_features.shape[1]
    if num_frames > self.max_frames:
      raise ValueError(
          f"{num_frames} frames per video exceed the temporal position table "
          f"(model.temporal.max_frames={self.max_frames}); raise it in the config"
      )
    x = nn.Dense(self.width, dtype=self.dtype, name="in_projection")(
        frame_features.astype(self.dtype)
    )
    position_table = self.param(
        "position_embedding", nn.initializers.normal(0.02), (self.max_frames, self.width)
    )
    x = x + position_table[:num_frames].astype(self.dtype)
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    for index in range(self.num_layers):
      x = TransformerLayer(
          num_heads=self.num_heads,
          mlp_dim=int(self.width * self.mlp_ratio),
          dropout=self.dropout,
          pre_norm=True,
          dtype=self.dtype,
          name=f"layer_{index}",
      )(x, key_mask=frame_mask, train=train)
    x = nn.LayerNorm(dtype=self.dtype, name="norm")(x).astype(jnp.float32)
    return masked_frame_mean(x, frame_mask)

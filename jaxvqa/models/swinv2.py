"""SwinV2 backbone (Liu et al., 2022) in Flax Linen, numerically matching timm / HF `Swinv2Model`.

The model maps ImageNet-normalised images [B, H, W, 3] to four stage maps and a pooled
feature (`SwinV2Output`). What it implements, and where each piece lives:

- patch embedding: conv p×p stride p + LayerNorm (`PatchEmbed`);
- window attention with scaled cosine similarity, a clamped per-head logit scale, q and v
  biases (the k bias is fixed at zero) and a continuous position bias from a small MLP over
  log-spaced relative coordinates (`WindowAttention`, `ContinuousPositionBias`);
- res-post-norm blocks with (shifted) windows, the −100 mask across cyclic-shift regions and
  stochastic depth (`SwinV2Block`, `DropPath`);
- patch merging 2×2 → Linear(4C→2C, no bias) → LayerNorm (`PatchMerging`).

Parity reference: HF `transformers` `Swinv2Model`, including how it pads feature maps that are
not a multiple of the window and how it picks each stage's window:
  nominal height of stage i   = (H // patch_size) // 2**i   (floor, as HF derives it from
                                                              the configured image size)
  window of stage i           = min(window_size, nominal height)
  shift of odd blocks         = window_size // 2, or 0 when nominal height <= window_size.
Windows are square and chosen from the height, as in HF; timm clamps each axis on its own,
which only differs when one side is <= window < the other. The shift mask is added once with
−100 (timm); HF adds its mask twice (−200), which changes nothing in fp32 because e^−100
already underflows against the other logits.

Randomness: stochastic depth draws from the Flax rng stream named `DROP_PATH_RNG` ("dropout",
the same stream nn.Dropout uses), so `model.apply(..., train=True, rngs={"dropout": key})`.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvqa.models import window_attention_pallas
from jaxvqa.models import windows
from jaxvqa.models.window_attention import shifted_window_attention

DROP_PATH_RNG = "dropout"

LAYER_NORM_EPS = 1e-5
LOGIT_SCALE_INIT = math.log(10.0)
LOGIT_SCALE_MAX = math.log(100.0)
POSITION_BIAS_HIDDEN = 512
POSITION_BIAS_RANGE = 16.0
# Window attention paths: the XLA reference, or the fused kernel of `window_attention_pallas`
# (GPU; interpreted elsewhere). `attention_impl` takes one, or "auto" (the default): the kernel
# where the program is lowered for a CUDA GPU, XLA elsewhere.
ATTENTION_PATHS = ("xla", "pallas")
ATTENTION_IMPLS = ("auto", *ATTENTION_PATHS)

_linear_init = nn.initializers.truncated_normal(stddev=0.02)


def _layer_norm(name: str, dtype: Any, param_dtype: Any, zero_init: bool = False) -> nn.LayerNorm:
  init = nn.initializers.zeros if zero_init else nn.initializers.ones
  return nn.LayerNorm(
      epsilon=LAYER_NORM_EPS, dtype=dtype, param_dtype=param_dtype, scale_init=init, name=name
  )


def _dense(
    features: int, name: str, dtype: Any, param_dtype: Any, use_bias: bool = True
) -> nn.Dense:
  return nn.Dense(
      features,
      use_bias=use_bias,
      kernel_init=_linear_init,
      bias_init=nn.initializers.zeros,
      dtype=dtype,
      param_dtype=param_dtype,
      name=name,
  )


class SwinV2Output(NamedTuple):
  """What the backbone returns.

  stages: 4 maps [B, h_i, w_i, C_i], the output of stage i after its trailing patch merging
    (Microsoft / HF layout; HF `reshaped_hidden_states[1:]`). For SwinV2-T at 256²:
    192@32², 384@16², 768@8², 768@8².
  pooled: [B, C_last], final LayerNorm over the last stage's tokens, then their mean
    (HF `pooler_output`, timm `forward_head(pre_logits=True)`).
  """

  stages: tuple[jax.Array, ...]
  pooled: jax.Array


# ----------------------------------------------------------------------------------------------
# Static geometry: window choice, partitioning, relative positions, shift mask. All numpy or
# reshapes on static shapes, so XLA sees fixed sizes.


# ----------------------------------------------------------------------------------------------
# Layers.


class ContinuousPositionBias(nn.Module):
  """Per-head bias over a window's token pairs from an MLP of relative coordinates.

  Depends only on parameters and static geometry, so it is computed once per block call and
  broadcast over windows and batch. Returns [heads, window², window²] float32 in (0, 16).
  """

  num_heads: int
  window: int
  pretrained_window: int = 0
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self) -> jax.Array:
    table = jnp.asarray(windows.relative_coords_table(self.window, self.pretrained_window))
    hidden = nn.relu(_dense(POSITION_BIAS_HIDDEN, "hidden", jnp.float32, self.param_dtype)(table))
    out = _dense(self.num_heads, "out", jnp.float32, self.param_dtype, use_bias=False)
    per_offset = out(hidden)  # [(2·window−1)², heads]
    index = windows.relative_position_index(self.window)
    bias = per_offset[index.reshape(-1)].reshape(*index.shape, self.num_heads)
    return POSITION_BIAS_RANGE * jax.nn.sigmoid(bias.transpose(2, 0, 1))


class WindowAttention(nn.Module):
  """Scaled cosine multi-head attention inside the windows of a map rolled by −shift.

  x: [B, H, W, C], H and W multiples of `window` → [B, H, W, C]. shift: 0 ≤ shift < window; the
  tokens of different regions of the rolled map do not attend to each other (the shift mask).
  Parameters: qkv kernel (C, 3C) without bias, q_bias (C,), v_bias (C,) — the k bias is zero by
  design, so it is not a parameter —, logit_scale (heads, 1, 1), cpb_mlp, proj.
  attention_impl: one of `ATTENTION_IMPLS`. "pallas" runs the fused kernel where
  `window_attention_pallas.supports` the window and head sizes and XLA elsewhere; "auto" does so
  only where the program is lowered for CUDA (`window_attention_pallas.on_cuda`). The linears
  act per token, so they run on the map itself: the kernel reads each window's rows from it.
  """

  dim: int
  num_heads: int
  window: int
  pretrained_window: int = 0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  attention_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, shift: int = 0) -> jax.Array:
    batch, height, width, _ = x.shape
    head_dim = self.dim // self.num_heads
    q_bias = self.param("q_bias", nn.initializers.zeros, (self.dim,), self.param_dtype)
    v_bias = self.param("v_bias", nn.initializers.zeros, (self.dim,), self.param_dtype)
    logit_scale = self.param(
        "logit_scale",
        nn.initializers.constant(LOGIT_SCALE_INIT),
        (self.num_heads, 1, 1),
        self.param_dtype,
    )

    qkv = _dense(3 * self.dim, "qkv", self.dtype, self.param_dtype, use_bias=False)(x)
    qkv_bias = jnp.concatenate([q_bias, jnp.zeros_like(q_bias), v_bias]).astype(self.dtype)
    qkv = (qkv + qkv_bias).reshape(batch, height, width, 3, self.num_heads, head_dim)
    scale = jnp.exp(jnp.minimum(logit_scale.astype(jnp.float32), LOGIT_SCALE_MAX)).reshape(-1)
    bias = ContinuousPositionBias(
        self.num_heads, self.window, self.pretrained_window, self.param_dtype, name="cpb_mlp"
    )()
    mask = windows.shifted_window_mask(height, width, windows.StageWindow(self.window, shift))
    mask = None if mask is None else jnp.asarray(mask)
    attend = shifted_window_attention
    if window_attention_pallas.supports(self.window**2, head_dim):
      if self.attention_impl == "pallas":
        attend = window_attention_pallas.shifted_window_attention
      elif self.attention_impl == "auto":
        attend = functools.partial(window_attention_pallas.on_cuda, elsewhere=attend)
    out = attend(qkv, scale, bias, mask, window=self.window, shift=shift)
    return _dense(self.dim, "proj", self.dtype, self.param_dtype)(out.reshape(x.shape))


class DropPath(nn.Module):
  """Stochastic depth: zero a residual branch for whole samples with probability `rate`.

  x: [B, ...]. Survivors are scaled by 1/(1−rate). Identity when not training or rate is 0.
  Draws from the `DROP_PATH_RNG` stream.
  """

  rate: float

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    if not train or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    kept = jax.random.bernoulli(self.make_rng(DROP_PATH_RNG), keep, shape)
    return jnp.where(kept, x / keep, jnp.zeros_like(x))


class MLP(nn.Module):
  """Linear(C→hidden) → GELU → Linear(hidden→C). x: [..., C] → [..., C].

  GELU is the exact (erf) one in fp32, as timm's. In half precision it is the tanh form: the two
  differ by at most 4.7e-4 (at x ≈ 2.7, a relative 1.8e-4), under bf16's rounding of 2e-3, and the
  tanh form is the one XLA's GPU compiler fuses into the fc1 matmul's epilogue, which saves
  writing and re-reading the MLP's widest activation.
  """

  dim: int
  hidden: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = _dense(self.hidden, "fc1", self.dtype, self.param_dtype)(x)
    x = nn.gelu(x, approximate=jnp.dtype(self.dtype).itemsize < 4)
    return _dense(self.dim, "fc2", self.dtype, self.param_dtype)(x)


class SwinV2Block(nn.Module):
  """Res-post-norm block: x + DropPath(norm1(attn(x))), then x + DropPath(norm2(mlp(x))).

  x: [B, H, W, C] → [B, H, W, C]. The map is padded to a multiple of the window, attended in the
  windows of the map rolled by −shift (`WindowAttention`) and cropped — HF's order of operations.
  norm1/norm2 start at zero (timm's res-post-norm init), so a fresh block is the identity.
  """

  dim: int
  num_heads: int
  window: windows.StageWindow
  pretrained_window: int = 0
  mlp_ratio: float = 4.0
  drop_path: float = 0.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  attention_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    _, height, width, _ = x.shape
    size, shift = self.window
    attention = WindowAttention(
        self.dim,
        self.num_heads,
        size,
        self.pretrained_window,
        self.dtype,
        self.param_dtype,
        self.attention_impl,
        name="attn",
    )
    attended = attention(windows.pad_bottom_right(x, size), shift)[:, :height, :width, :]

    drop_path = DropPath(self.drop_path)
    norm1 = _layer_norm("norm1", self.dtype, self.param_dtype, zero_init=True)
    norm2 = _layer_norm("norm2", self.dtype, self.param_dtype, zero_init=True)
    x = x + drop_path(norm1(attended), train=train)
    mlp = MLP(self.dim, int(self.dim * self.mlp_ratio), self.dtype, self.param_dtype, name="mlp")
    return x + drop_path(norm2(mlp(x)), train=train)


class PatchMerging(nn.Module):
  """[B, H, W, C] → [B, ⌈H/2⌉, ⌈W/2⌉, 2C]: 2×2 cells → Linear(4C→2C, no bias) → LayerNorm.

  Odd sides get a zero row/column. The cell's pixels are concatenated in the order
  (0,0), (1,0), (0,1), (1,1) as (row, col) offsets — the order pretrained kernels expect.
  """

  dim: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = windows.pad_bottom_right(x, 2)
    cell = [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]]
    x = jnp.concatenate(cell, axis=-1)
    x = _dense(2 * self.dim, "reduction", self.dtype, self.param_dtype, use_bias=False)(x)
    return _layer_norm("norm", self.dtype, self.param_dtype)(x)


class PatchEmbed(nn.Module):
  """[B, H, W, 3] → [B, ⌈H/p⌉, ⌈W/p⌉, C]: conv p×p stride p + LayerNorm; H, W zero-padded to p."""

  # Declarative data: module fields and call header alike in shape to the MLP's above.
  dim: int
  patch_size: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = windows.pad_bottom_right(x, self.patch_size)
    p = self.patch_size
    x = nn.Conv(
        self.dim,
        (p, p),
        strides=(p, p),
        padding="VALID",
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name="proj",
    )(x)
    return _layer_norm("norm", self.dtype, self.param_dtype)(x)


class SwinV2Stage(nn.Module):
  """`depth` blocks (odd ones shifted), then patch merging unless it is the last stage.

  x: [B, H, W, C] → [B, ⌈H/2⌉, ⌈W/2⌉, 2C], or [B, H, W, C] for the last stage.
  """

  dim: int
  depth: int
  num_heads: int
  window: windows.StageWindow
  pretrained_window: int
  mlp_ratio: float
  drop_path: Sequence[float]
  downsample: bool
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  attention_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    for j in range(self.depth):
      window = self.window if j % 2 else windows.StageWindow(self.window.size, 0)
      x = SwinV2Block(
          self.dim,
          self.num_heads,
          window,
          self.pretrained_window,
          self.mlp_ratio,
          self.drop_path[j],
          self.dtype,
          self.param_dtype,
          self.attention_impl,
          name=f"block_{j}",
      )(x, train=train)
    if self.downsample:
      x = PatchMerging(self.dim, self.dtype, self.param_dtype, name="downsample")(x)
    return x


class SwinV2(nn.Module):
  """SwinV2 backbone. x: [B, H, W, 3] float, already ImageNet-normalised → `SwinV2Output`.

  Any H, W works as long as every stage keeps at least one row (H ≥ patch_size·2^(stages−1));
  the window of each stage follows from H as the module docstring explains.
  Parameters are `param_dtype`; matmuls run in `dtype` (bf16 fast path) with attention
  logits, softmax and LayerNorm statistics in fp32. `attention_impl` picks the window
  attention: "auto" (the default) is the fused kernel of `window_attention_pallas` where the
  program is lowered for a CUDA GPU and the XLA path elsewhere (CPU, TPU); "xla" is the reference
  everywhere; "pallas" the kernel everywhere (interpreted, hence slow, off CUDA). It is how the
  model runs, not what it is (same parameters): scoring runs a recorded run with "auto", and
  JAXVQA_ATTENTION=xla|pallas|auto forces a path for debugging (`vqa.attention_impl_to_run`).
  A program lowered for several platforms at once (a `jax.export`) needs "xla".
  """

  embed_dim: int = 96
  depths: Sequence[int] = (2, 2, 6, 2)
  num_heads: Sequence[int] = (3, 6, 12, 24)
  window_size: int = 8
  pretrained_window_sizes: Sequence[int] = (0, 0, 0, 0)
  patch_size: int = 4
  mlp_ratio: float = 4.0
  drop_path_rate: float = 0.1
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  attention_impl: str = "auto"

  def _check_fields(self) -> None:
    if self.attention_impl not in ATTENTION_IMPLS:
      raise ValueError(
          f"SwinV2.attention_impl must be one of {ATTENTION_IMPLS}, "
          f"got {self.attention_impl!r}."
      )
    n = len(self.depths)
    for field in ("num_heads", "pretrained_window_sizes"):
      if len(getattr(self, field)) != n:
        raise ValueError(
            f"SwinV2.{field} has {len(getattr(self, field))} entries but depths "
            f"has {n}; give one per stage."
        )
    for i, heads in enumerate(self.num_heads):
      if (self.embed_dim * 2**i) % heads:
        raise ValueError(
            f"SwinV2 stage {i}: width {self.embed_dim * 2**i} is not divisible by "
            f"num_heads[{i}]={heads}."
        )

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> SwinV2Output:
    self._check_fields()
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f"SwinV2 expects images [B, H, W, 3], got shape {x.shape}.")
    num_stages = len(self.depths)
    grid_height = x.shape[1] // self.patch_size
    if grid_height // 2 ** (num_stages - 1) < 1:
      raise ValueError(
          f"SwinV2: input height {x.shape[1]} is too small for {num_stages} stages; "
          f"need at least {self.patch_size * 2**(num_stages - 1)} pixels."
      )
    rates = np.linspace(0.0, self.drop_path_rate, sum(self.depths)).tolist()

    embed = PatchEmbed(
        self.embed_dim, self.patch_size, self.dtype, self.param_dtype, name="patch_embed"
    )
    x = embed(x.astype(self.dtype))
    stages = []
    for i, depth in enumerate(self.depths):
      first = sum(self.depths[:i])
      x = SwinV2Stage(
          dim=self.embed_dim * 2**i,
          depth=depth,
          num_heads=self.num_heads[i],
          window=windows.stage_window(grid_height // 2**i, self.window_size),
          pretrained_window=self.pretrained_window_sizes[i],
          mlp_ratio=self.mlp_ratio,
          drop_path=rates[first : first + depth],
          downsample=i < num_stages - 1,
          dtype=self.dtype,
          param_dtype=self.param_dtype,
          attention_impl=self.attention_impl,
          name=f"stage_{i}",
      )(x, train=train)
      stages.append(x)
    tokens = _layer_norm("norm", self.dtype, self.param_dtype)(x)
    pooled = tokens.astype(jnp.float32).mean(axis=(1, 2)).astype(self.dtype)
    return SwinV2Output(stages=tuple(stages), pooled=pooled)


def forward_flops(model: SwinV2, height: int, width: int) -> int:
  """Matmul FLOPs (2 per multiply-add) of one image's forward pass through `model`.

  Counted: patch embedding, qkv, q·kᵀ, attention·v and the output projection over the padded
  windows the model attends in, the MLP, and patch merging. Left out, as timm's and fvcore's
  counts leave them out: LayerNorms, softmax, GELU and the position-bias MLP (which runs once
  per call, not per image). SwinV2-T window 8 at 256² gives 11.84 GFLOP, timm's 5.92 GMAC.
  A training step costs about three times this (the forward and two backward matmuls each).
  """
  p = model.patch_size
  h, w = -(-height // p), -(-width // p)
  flops = 2 * h * w * p * p * 3 * model.embed_dim
  grid_height = height // p
  for i, depth in enumerate(model.depths):
    dim = model.embed_dim * 2**i
    window = windows.stage_window(grid_height // 2**i, model.window_size).size
    attended = (-(-h // window) * window) * (-(-w // window) * window)
    attention = (
        2 * attended * dim * 3 * dim + 2 * 2 * attended * window**2 * dim + 2 * attended * dim**2
    )
    mlp = 2 * 2 * h * w * dim * int(dim * model.mlp_ratio)
    flops += depth * (attention + mlp)
    if i < len(model.depths) - 1:
      h, w = -(-h // 2), -(-w // 2)
      flops += 2 * h * w * 4 * dim * 2 * dim
  return flops

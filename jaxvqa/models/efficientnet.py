"""EfficientNet-Lite (Tan & Le, 2019; the "Lite" edge variants of 2020) in Flax Linen.

The network is EfficientNet-B0's layout of 16 MBConv blocks in 7 groups, with the changes that
make the Lite models quantisation-friendly: no squeeze-excitation, ReLU6 in place of swish, and a
stem (32 channels) and head (1280 channels) that stay fixed when the width is scaled, as do the
repeats of the first and last block groups when the depth is scaled. Lite0 is the default; lite1
and lite2 are a change of `width_coefficient` / `depth_coefficient` (`LITE_COEFFICIENTS`).

  stem      conv 3×3 /2 (32) + BN + ReLU6
  blocks    MBConv: [1×1 expand ×e + BN + ReLU6] → depthwise k×k /s + BN + ReLU6
            → 1×1 project + BN, plus the input when the stride is 1 and the width unchanged
  head      conv 1×1 (1280) + BN + ReLU6 → global mean → Dense(1000)

Convolutions pad TF-"same" (XLA's "SAME": the total padding ceil(n/s)·s − s + k − n, the odd
pixel after, so stride-2 convolutions pad asymmetrically), because the weights were trained in
TensorFlow. Batch norm uses TF's epsilon 1e-3 and momentum 0.99 (PyTorch's momentum 0.01).

Input convention: like `jaxvqa.models.swinv2.SwinV2`, the model takes ImageNet mean/std
normalised RGB. The Lite weights were trained on (pixel − 127) / 128 instead (TF's
efficientnet_lite_builder: "inception-style" statistics, kept for post-training quantisation),
so the model converts its input to that range first. The choice is measured, not assumed:
the stem's batch-norm running variance is the variance its convolution saw on ImageNet, and
on scikit-image photographs converted input lands near it (mean log ratio −0.3) while
ImageNet-normalised input fed unconverted lands ≈ 3.6× above it (+1.3).

Pretrained ImageNet weights and their provenance: `jaxvqa.models.efficientnet_weights`.
"""

from __future__ import annotations

import functools
import math
from typing import Any, ClassVar, Mapping, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvqa.models.vqa import IMAGENET_MEAN, IMAGENET_STD

# TensorFlow's batch-norm settings, which the weights were trained with.
BATCH_NORM_MOMENTUM = 0.99
BATCH_NORM_EPSILON = 1e-3
# Lite inputs: (pixel − 127) / 128, pixel in [0, 255].
LITE_INPUT_MEAN = 127.0
LITE_INPUT_STD = 128.0
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
CHANNEL_DIVISOR = 8
# The strides `EfficientNetOutput.stages` holds, finest first.
STAGE_STRIDES = (4, 8, 16, 32)
# (width_coefficient, depth_coefficient) of TF's efficientnet_lite_builder; each variant was
# trained at its own resolution (224, 240, 260), but any multiple of 32 runs.
LITE_COEFFICIENTS = {"lite0": (1.0, 1.0), "lite1": (1.0, 1.1), "lite2": (1.1, 1.2)}
# How each convolution's output is normalised: "batch" (BatchNorm, running statistics in
# `batch_stats`) or "folded" (a per-channel scale and bias in `params`: the running statistics
# folded in by `fold_batch_norm`, which is how the network is fine-tuned as the quality model's
# backbone, where batches are a few frames of a few videos and batch statistics would be noise).
NORMS = ("batch", "folded")


class BlockGroup(NamedTuple):
  """One group of identical MBConv blocks; only its first block strides or changes width."""

  repeats: int
  kernel_size: int
  stride: int
  expand_ratio: int
  out_channels: int


# EfficientNet-B0's groups, before width and depth scaling.
B0_GROUPS = (
    BlockGroup(repeats=1, kernel_size=3, stride=1, expand_ratio=1, out_channels=16),
    BlockGroup(repeats=2, kernel_size=3, stride=2, expand_ratio=6, out_channels=24),
    BlockGroup(repeats=2, kernel_size=5, stride=2, expand_ratio=6, out_channels=40),
    BlockGroup(repeats=3, kernel_size=3, stride=2, expand_ratio=6, out_channels=80),
    BlockGroup(repeats=3, kernel_size=5, stride=1, expand_ratio=6, out_channels=112),
    BlockGroup(repeats=4, kernel_size=5, stride=2, expand_ratio=6, out_channels=192),
    BlockGroup(repeats=1, kernel_size=3, stride=1, expand_ratio=6, out_channels=320),
)


class EfficientNetOutput(NamedTuple):
  """What the network returns for an input [B, H, W, 3] (H, W multiples of 32; other sizes
  round each stride-2 layer up, so H/s below becomes ceil(ceil(H/2)/2)…).

  stages: 4 maps [B, H/s, W/s, C_s] for s = 4, 8, 16, 32, each the output of the last block
    at that stride. Lite0: 24, 40, 112, 320 channels.
  head: [B, H/32, W/32, 1280], the 1×1 head convolution + BN + ReLU6.
  logits: [B, num_classes], the head's spatial mean through the classifier (ImageNet-1k order).
  """

  stages: tuple[jax.Array, ...]
  head: jax.Array | None  # None when the network has no classifier (num_classes=0)
  logits: jax.Array | None


def scale_width(channels: int, width_coefficient: float) -> int:
  """TF's round_filters: channels × coefficient, to a multiple of 8, never 10 % below."""
  scaled = channels * width_coefficient
  rounded = max(
      CHANNEL_DIVISOR, int(scaled + CHANNEL_DIVISOR / 2) // CHANNEL_DIVISOR * CHANNEL_DIVISOR
  )
  if rounded < 0.9 * scaled:
    rounded += CHANNEL_DIVISOR
  return int(rounded)


def scaled_groups(width_coefficient: float, depth_coefficient: float) -> tuple[BlockGroup, ...]:
  """B0's groups scaled the Lite way: the first and last groups keep their repeats."""
  last = len(B0_GROUPS) - 1
  groups = []
  for index, group in enumerate(B0_GROUPS):
    repeats = group.repeats
    if index not in (0, last):
      repeats = int(math.ceil(depth_coefficient * repeats))
    out_channels = scale_width(group.out_channels, width_coefficient)
    groups.append(group._replace(repeats=repeats, out_channels=out_channels))
  return tuple(groups)


def lite_input_from_imagenet(images: jax.Array) -> jax.Array:
  """[..., 3] ImageNet mean/std normalised → (pixel − 127) / 128, in float32."""
  mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
  std = jnp.asarray(IMAGENET_STD, jnp.float32)
  pixels = images.astype(jnp.float32) * std + mean
  return (pixels - LITE_INPUT_MEAN) / LITE_INPUT_STD


class ConvBatchNorm(nn.Module):
  """Bias-free convolution (TF-"same" padding) + batch norm, optionally + ReLU6.

  [B, H, W, C_in] → [B, ceil(H/stride), ceil(W/stride), features]. `depthwise` convolves each
  channel on its own (feature_group_count = channels, so features must equal C_in).
  """

  features: int
  kernel_size: int
  stride: int = 1
  depthwise: bool = False
  activate: bool = True
  norm: str = "batch"  # one of NORMS
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if self.depthwise:
      x = DepthwiseConv(self.kernel_size, self.stride, self.dtype, self.param_dtype, name="conv")(x)
    else:
      x = nn.Conv(
          self.features,
          (self.kernel_size, self.kernel_size),
          strides=self.stride,
          padding="SAME",
          use_bias=False,
          dtype=self.dtype,
          param_dtype=self.param_dtype,
          name="conv",
      )(x)
    if self.norm == "folded":
      x = FoldedNorm(dtype=self.dtype, param_dtype=self.param_dtype, name="bn")(x)
    else:
      x = nn.BatchNorm(
          use_running_average=not train,
          momentum=BATCH_NORM_MOMENTUM,
          epsilon=BATCH_NORM_EPSILON,
          dtype=self.dtype,
          param_dtype=self.param_dtype,
          name="bn",
      )(x)
    return jnp.clip(x, 0, 6) if self.activate else x


class DepthwiseConv(nn.Module):
  """Bias-free depthwise convolution with TF-"same" padding: each channel by its own k × k kernel.

  [B, H, W, C] → [B, ceil(H/stride), ceil(W/stride), C]; kernel [k, k, 1, C], nn.Conv's parameter
  for feature_group_count = C (same name, shape and initialiser, so converted weights load). On
  CPU the sum over the k² taps is written out: XLA's grouped convolution is 5-30× slower there
  (benchmarks/depthwise_cpu.py); for any other platform it is the convolution.
  """

  kernel_size: int
  stride: int = 1
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    kernel = self.param(
        "kernel", nn.initializers.lecun_normal(), (k, k, 1, x.shape[-1]), self.param_dtype
    )
    # Chosen per lowering, as the SwinV2's window attention is (`window_attention_pallas.on_cuda`):
    # a program for the CPU writes the sum out, wherever it is traced.
    return jax.lax.platform_dependent(
        x.astype(self.dtype),
        kernel.astype(self.dtype),
        cpu=functools.partial(depthwise_conv, stride=self.stride, written_out=True),
        default=functools.partial(depthwise_conv, stride=self.stride, written_out=False),
    )


def depthwise_conv(x: jax.Array, kernel: jax.Array, stride: int, *, written_out: bool) -> jax.Array:
  """DepthwiseConv's computation: x [B, H, W, C], kernel [k, k, 1, C] → [B, H', W', C] with
  TF-"same" padding, as XLA's grouped convolution or (`written_out`) as the sum of k² shifted,
  strided slices times their tap."""
  k, channels = kernel.shape[0], x.shape[-1]
  if not written_out:
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        (stride, stride),
        "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=channels,
    )
  height, width = x.shape[1:3]
  out_h, out_w = -(-height // stride), -(-width // stride)
  # TF-"same": the padding a stride needs, the odd pixel after.
  pad_h = max((out_h - 1) * stride + k - height, 0)
  pad_w = max((out_w - 1) * stride + k - width, 0)
  x = jnp.pad(
      x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
  )
  out = jnp.zeros((x.shape[0], out_h, out_w, channels), x.dtype)
  for row in range(k):
    for col in range(k):
      tap = x[
          :,
          row : row + stride * (out_h - 1) + 1 : stride,
          col : col + stride * (out_w - 1) + 1 : stride,
      ]
      out = out + tap * kernel[row, col, 0]
  return out


class FoldedNorm(nn.Module):
  """[..., C] → x · scale + bias: a batch norm whose running statistics are folded into its
  affine parameters (`fold_batch_norm`), so it is the same function at train and test time."""

  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    channels = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (channels,), self.param_dtype)
    bias = self.param("bias", nn.initializers.zeros, (channels,), self.param_dtype)
    return x * scale.astype(self.dtype) + bias.astype(self.dtype)


def fold_batch_norm(variables: Mapping[str, Any]) -> dict[str, Any]:
  """{'params', 'batch_stats'} of a norm="batch" network → the params of the same network with
  norm="folded", computing the same function in inference mode:
  scale' = γ / sqrt(σ² + ε), bias' = β − μ · scale'."""
  from flax import traverse_util

  params = traverse_util.flatten_dict(jax.device_get(variables["params"]))
  stats = traverse_util.flatten_dict(jax.device_get(variables.get("batch_stats", {})))
  folded = dict(params)
  for path, mean in stats.items():
    if path[-1] != "mean":
      continue
    module = path[:-1]
    variance = np.asarray(stats[module + ("var",)], np.float64)
    gamma = np.asarray(params[module + ("scale",)], np.float64)
    beta = np.asarray(params[module + ("bias",)], np.float64)
    scale = gamma / np.sqrt(variance + BATCH_NORM_EPSILON)
    folded[module + ("scale",)] = scale.astype(np.float32)
    folded[module + ("bias",)] = (beta - np.asarray(mean, np.float64) * scale).astype(np.float32)
  return traverse_util.unflatten_dict(folded)


class MBConv(nn.Module):
  """Inverted residual without squeeze-excitation: [B, H, W, C_in] → [B, H/s, W/s, out_channels].

  The identity shortcut is added when stride is 1 and out_channels == C_in. No stochastic depth:
  the Lite models serve here as a frozen teacher or a fine-tuned backbone.
  """

  kernel_size: int
  stride: int
  expand_ratio: int
  out_channels: int
  norm: str = "batch"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    in_channels = x.shape[-1]
    dtypes = dict(dtype=self.dtype, param_dtype=self.param_dtype, norm=self.norm)
    hidden = x
    if self.expand_ratio != 1:
      hidden = ConvBatchNorm(in_channels * self.expand_ratio, 1, name="expand", **dtypes)(
          hidden, train
      )
    hidden = ConvBatchNorm(
        hidden.shape[-1],
        self.kernel_size,
        stride=self.stride,
        depthwise=True,
        name="depthwise",
        **dtypes,
    )(hidden, train)
    hidden = ConvBatchNorm(self.out_channels, 1, activate=False, name="project", **dtypes)(
        hidden, train
    )
    if self.stride == 1 and self.out_channels == in_channels:
      hidden = hidden + x
    return hidden


class EfficientNetLite(nn.Module):
  """EfficientNet-Lite: [B, H, W, 3] ImageNet-normalised RGB → `EfficientNetOutput`.

  Any H and W run (TF-"same" padding); multiples of 32 make every map an exact fraction of the
  input, otherwise each stride-2 layer rounds up. Defaults are
  lite0; `LITE_COEFFICIENTS` gives the coefficients of lite1 and lite2. `dtype` is the compute
  dtype, `param_dtype` the parameters'; the input conversion and the global mean run in float32.

  Blocks are named `block_{i}`, i = 0..15 for lite0, in the order of the PyTorch `_blocks.{i}`.
  `train=True` normalises with the batch's statistics and updates `batch_stats` (pass
  mutable=["batch_stats"]); `train=False` uses the running statistics. With norm="folded" there
  are no batch statistics (see NORMS) and `train` changes nothing.

  `num_classes=0` drops the head convolution and the classifier (`head` and `logits` are None):
  the quality model's backbone reads the four stage maps only.
  """

  width_coefficient: float = 1.0
  depth_coefficient: float = 1.0
  num_classes: int = 1000
  norm: str = "batch"  # one of NORMS
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  # The finest stage's stride: what `SwinV2.patch_size` is to the detail branch of the VQA model.
  patch_size: ClassVar[int] = STAGE_STRIDES[0]

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> EfficientNetOutput:
    if self.norm not in NORMS:
      raise ValueError(f"EfficientNetLite.norm must be one of {NORMS}, got {self.norm!r}")
    dtypes = dict(dtype=self.dtype, param_dtype=self.param_dtype, norm=self.norm)
    x = lite_input_from_imagenet(images).astype(self.dtype)
    x = ConvBatchNorm(STEM_CHANNELS, 3, stride=2, name="stem", **dtypes)(x, train)
    stride = 2
    last_output_at_stride = {}
    block_index = 0
    for group in scaled_groups(self.width_coefficient, self.depth_coefficient):
      for repeat in range(group.repeats):
        x = MBConv(
            kernel_size=group.kernel_size,
            stride=group.stride if repeat == 0 else 1,
            expand_ratio=group.expand_ratio,
            out_channels=group.out_channels,
            name=f"block_{block_index}",
            **dtypes,
        )(x, train)
        block_index += 1
      stride *= group.stride
      last_output_at_stride[stride] = x
    stages = tuple(last_output_at_stride[s] for s in STAGE_STRIDES)
    if not self.num_classes:
      return EfficientNetOutput(stages=stages, head=None, logits=None)
    head = ConvBatchNorm(HEAD_CHANNELS, 1, name="head", **dtypes)(x, train)
    pooled = head.astype(jnp.float32).mean(axis=(1, 2))
    logits = nn.Dense(
        self.num_classes, name="classifier", dtype=self.dtype, param_dtype=self.param_dtype
    )(pooled.astype(self.dtype))
    return EfficientNetOutput(stages=stages, head=head, logits=logits)

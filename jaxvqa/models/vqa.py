"""The whole quality model: frames → SwinV2 stage maps → frame features → video embedding → score.

`VQAModel` scores videos; `IQAModel` is its spatial half with a per-image head, trained first on
image-quality sets (docs/METHOD.md) and handed over with `transfer_spatial_params`. Both take
raw RGB pixels in [0, 255] (uint8 or float) and normalise them with ImageNet statistics inside, so
callers never have to remember to.

`build_vqa_model` / `build_iqa_model` turn a `config.model` ConfigDict into modules, giving each
sub-module only the numbers it uses.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, NamedTuple

import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp

from jaxvqa.models.fusion import MultiStageFusion, TemporalFusion, masked_frame_mean
from jaxvqa.models.l2 import l2_normalize
from jaxvqa.models.scene_statistics import scene_statistics, validate_region
from jaxvqa.models.swinv2 import ATTENTION_IMPLS, SwinV2

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
SPATIAL_MODULES = ("backbone", "spatial_fusion")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class VQAOutput(NamedTuple):
  score: jax.Array  # [B] predicted quality, on the training label's scale after calibration
  # None both for a scorer without the embedding path (VQAModel.embedding_in_head=False)
  embedding: jax.Array | None  # [B, D] video embedding
  projection: jax.Array | None  # [B, P] L2-normalised projection for the group contrastive loss


class IQAOutput(NamedTuple):
  score: jax.Array  # [B]
  feature: jax.Array  # [B, F] fused frame feature


def normalize_pixels(pixels: jax.Array, dtype: Any) -> jax.Array:
  """[..., 3] RGB in [0, 255] → ImageNet-normalised values in `dtype`."""
  mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
  std = jnp.asarray(IMAGENET_STD, jnp.float32)
  return ((pixels.astype(jnp.float32) - mean) / std).astype(dtype)


class QualityHead(nn.Module):
  """[B, D] (+ [B, C] container features) → [B]: Dense(hidden), GELU, Dense(1) (the authors' size).

  Always float32, whatever the model's compute dtype: the losses standardise scores, so a model
  may put a small spread on a large mean, and bf16's 8-bit mantissa would round videos of one
  source to the same score. The head is a negligible share of the FLOPs.
  Container features, detail statistics and scene statistics enter through their own bias-free
  Dense added before the GELU, so a model without them is the same tree without that leaf, and
  zero features change nothing.
  """

  hidden: int = 64

  @nn.compact
  def __call__(self, x, container=None, detail=None, statistics=None):
    x = nn.Dense(self.hidden, dtype=jnp.float32, name="hidden")(x.astype(jnp.float32))
    for name, extra in (("container", container), ("detail", detail), ("statistics", statistics)):
      if extra is not None:
        x = x + nn.Dense(self.hidden, use_bias=False, dtype=jnp.float32, name=name)(
            extra.astype(jnp.float32)
        )
    return nn.Dense(1, dtype=jnp.float32, name="out")(nn.gelu(x))[..., 0]


class ProjectionHead(nn.Module):
  """[B, D] → [B, P], L2-normalised: the space where the group contrastive loss compares videos.
  Float32 like the quality head: cosine similarities are divided by τ = 0.1 in the loss."""

  dim: int = 128

  @nn.compact
  def __call__(self, x):
    x = x.astype(jnp.float32)
    x = nn.gelu(nn.Dense(x.shape[-1], dtype=jnp.float32, name="hidden")(x))
    x = nn.Dense(self.dim, dtype=jnp.float32, name="out")(x)
    return l2_normalize(x)


class DetailStatistics(nn.Module):
  """[N, H, W, 3] ImageNet-normalised pixels → [N, features · depth]: log of the mean |response|
  of `features` learnt p×p stride-p filters (the patch embedding's geometry, fragments never
  mixed), and with `depth` > 1 of each further 3×3 convolution (GELU between) over those maps.

  Why a branch beside the backbone: compression removes fine detail and adds block edges, and the
  patch-embedding projection sees both (a ridge read-out of a random-init projection ranks a
  held-out source's encodes at SRCC 0.79), but each later stage dilutes it (0.27 after the last;
  docs/results/HISTORY.md). Float32, because encodes of one source differ by a few per cent of
  the mean response, near bf16's resolution; the log, so that a sharpness ratio is a difference
  the head can add. The 3×3 layers see neighbouring patches, so they can respond to a block grid or
  ringing that one 4×4 patch cannot tell from texture (at fragment borders they mix fragments).
  """

  features: int = 32
  patch_size: int = 4
  depth: int = 1

  @nn.compact
  def __call__(self, x):
    p = self.patch_size
    response = nn.Conv(
        self.features, (p, p), strides=(p, p), padding="VALID", dtype=jnp.float32, name="filters"
    )(x.astype(jnp.float32))
    statistics = [response]
    for layer in range(1, self.depth):
      response = nn.Conv(self.features, (3, 3), dtype=jnp.float32, name=f"conv_{layer}")(
          nn.gelu(response)
      )
      statistics.append(response)
    return jnp.concatenate(
        [jnp.log(jnp.abs(r).mean(axis=(1, 2)) + 1e-3) for r in statistics], axis=-1
    )


def _frame_features(backbone, spatial_fusion, pixels, freeze_backbone, train):
  """[N, H, W, 3] ImageNet-normalised pixels (`normalize_pixels`) → [N, F] fused frame features."""
  stages = backbone(pixels, train=train).stages
  if freeze_backbone:
    stages = jax.lax.stop_gradient(stages)
  return spatial_fusion(stages, train=train)


class VQAModel(nn.Module):
  """frames [B, T, H, W, 3] in [0, 255], frame_mask [B, T] bool (False = padding) → VQAOutput.

  With `container_dim` > 0 (the hybrid variant, after ITU-T P.1204.5) the head also reads
  `container` [B, container_dim]: what the file says without decoding it (`container_features`).
  With `detail_features` > 0 it also reads `DetailStatistics` of the frames, averaged over the
  unmasked ones and multiplied by `detail_gate` (a scalar; 0 turns the branch off, which the
  stacked K-fold run uses for the variants without it). `embedding_gate` (a scalar) multiplies the
  video embedding where the quality head reads it: 0 scores from the detail statistics alone (the
  K-fold `detail_only` variant, stacked with models that do read it); the projection still reads
  the embedding. `embedding_in_head=False` is the scorer of such a model on its own: the backbone,
  both fusions and the projection are not run (nor have parameters), the head reads zeros where
  the embedding was, and `embedding` and `projection` are None. With `statistics_region` > 0 the
  head also reads the fixed `scene_statistics` of the frames (block grid and MSCN statistics,
  never across a region of that many px: the fragment size), averaged over the unmasked frames and
  multiplied by `statistics_gate` (0 turns them off, as `detail_gate` does).
  """

  backbone: SwinV2
  spatial_fusion: MultiStageFusion
  temporal_fusion: TemporalFusion
  head_hidden: int = 64
  projection_dim: int = 128
  freeze_backbone: bool = False
  container_dim: int = 0
  detail_features: int = 0
  detail_depth: int = 1  # DetailStatistics.depth
  embedding_in_head: bool = True  # False: a detail_only scorer (see above)
  statistics_region: int = 0  # > 0: the head reads scene_statistics over regions of this size
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
      self,
      frames,
      frame_mask=None,
      container=None,
      *,
      train: bool = False,
      detail_gate=1.0,
      embedding_gate=1.0,
      statistics_gate=1.0,
  ) -> VQAOutput:
    if self.container_dim and container is None:
      raise ValueError(
          f"this hybrid model reads container features [B, {self.container_dim}]; "
          "pass container="
      )
    if not self.container_dim:
      container = None
    batch, num_frames = frames.shape[:2]
    if frame_mask is None:
      frame_mask = jnp.ones((batch, num_frames), bool)
    # Normalised once in float32: the detail branch reads it as is, the backbone in its dtype.
    pixels = normalize_pixels(frames.reshape(batch * num_frames, *frames.shape[2:]), jnp.float32)
    detail = None
    if self.detail_features:
      statistics = DetailStatistics(
          self.detail_features, self.backbone.patch_size, self.detail_depth, name="detail"
      )(pixels)
      detail = detail_gate * masked_frame_mean(
          statistics.reshape(batch, num_frames, -1), frame_mask
      )
    scene = None
    if self.statistics_region:
      per_frame = scene_statistics(
          frames.reshape(batch * num_frames, *frames.shape[2:]), self.statistics_region
      )
      scene = statistics_gate * masked_frame_mean(
          per_frame.reshape(batch, num_frames, -1), frame_mask
      )
    if self.embedding_in_head:
      features = _frame_features(
          self.backbone,
          self.spatial_fusion,
          pixels.astype(self.dtype),
          self.freeze_backbone,
          train,
      )
      embedding = self.temporal_fusion(
          features.reshape(batch, num_frames, -1), frame_mask, train=train
      )
      head_input = embedding * embedding_gate
      projection = ProjectionHead(self.projection_dim, name="projection")(embedding)
    else:
      embedding = projection = None
      head_input = jnp.zeros((batch, self.temporal_fusion.width), jnp.float32)
    score = QualityHead(self.head_hidden, name="head")(head_input, container, detail, scene)
    return VQAOutput(score=score, embedding=embedding, projection=projection)


class IQAModel(nn.Module):
  """images [B, H, W, 3] in [0, 255] → IQAOutput: the spatial pre-training model."""

  backbone: SwinV2
  spatial_fusion: MultiStageFusion
  head_hidden: int = 64
  freeze_backbone: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images, *, train: bool = False) -> IQAOutput:
    feature = _frame_features(
        self.backbone,
        self.spatial_fusion,
        normalize_pixels(images, self.dtype),
        self.freeze_backbone,
        train,
    )
    score = QualityHead(self.head_hidden, name="image_head")(feature)
    return IQAOutput(score=score, feature=feature)


def _dtype(model_config) -> Any:
  if model_config.dtype not in DTYPES:
    raise ValueError(
        f"config.model.dtype must be one of {sorted(DTYPES)}, got {model_config.dtype!r}"
    )
  return DTYPES[model_config.dtype]


# Set to "xla", "pallas" or "auto", it forces the window-attention path of every model built from
# a config, over config.model.backbone.attention_impl and scoring's "auto" (for debugging).
ATTENTION_ENV = "JAXVQA_ATTENTION"


def attention_impl_to_run(configured: str = SwinV2.attention_impl) -> str:
  """`configured`, unless the environment variable `ATTENTION_ENV` forces another path.

  A run's recorded attention_impl says how it was trained, not how it must run: scoring passes
  nothing and runs "auto" (the fused kernel on a GPU) whatever the run recorded.
  """
  forced = os.environ.get(ATTENTION_ENV, "").strip()
  if not forced:
    return configured
  if forced not in ATTENTION_IMPLS:
    raise ValueError(f"{ATTENTION_ENV}={forced!r}: must be one of {ATTENTION_IMPLS} or unset")
  return forced


# config.model.backbone.name: the SwinV2 (the paper's backbone, the default) or the ImageNet
# EfficientNet-Lite0 a package ships (the distillation teacher, fine-tuned as a comparison row).
BACKBONES = ("swinv2", "efficientnet_lite0")


def build_backbone(model_config, *, attention_impl: str | None = None) -> SwinV2:
  """config.model.backbone (in config.model.dtype) → the backbone module, whose output has
  `.stages` (four maps at strides 4, 8, 16, 32); distillation builds its student so.

  attention_impl: the SwinV2's window-attention path as given; None: the config's, or what
  `ATTENTION_ENV` forces (`attention_impl_to_run`)."""
  b = model_config.backbone
  name = b.get("name", "swinv2")
  if name not in BACKBONES:
    raise ValueError(f"config.model.backbone.name must be one of {BACKBONES}, got {name!r}")
  if name == "efficientnet_lite0":
    from jaxvqa.models.efficientnet import EfficientNetLite

    return EfficientNetLite(num_classes=0, norm="folded", dtype=_dtype(model_config))
  return SwinV2(
      embed_dim=b.embed_dim,
      depths=tuple(b.depths),
      num_heads=tuple(b.num_heads),
      window_size=b.window_size,
      pretrained_window_sizes=tuple(b.pretrained_window_sizes),
      mlp_ratio=b.mlp_ratio,
      drop_path_rate=b.drop_path_rate,
      dtype=_dtype(model_config),
      attention_impl=attention_impl
      or attention_impl_to_run(b.get("attention_impl", SwinV2.attention_impl)),
  )


def _spatial_modules(
    model_config, attention_impl: str | None = None
) -> tuple[SwinV2, MultiStageFusion]:
  dtype = _dtype(model_config)
  f = model_config.fusion
  backbone = build_backbone(model_config, attention_impl=attention_impl)
  fusion = MultiStageFusion(
      grid=f.grid,
      num_layers=f.num_layers,
      num_heads=f.num_heads,
      mlp_dim=f.mlp_dim,
      dropout=f.dropout,
      feature_dropout=f.feature_dropout,
      out_dim=f.out_dim,
      token_layout=f.token_layout,
      stage_width=f.stage_width,
      token_norm=f.token_norm,
      dtype=dtype,
  )
  return backbone, fusion


def build_vqa_model(model_config, *, attention_impl: str | None = None) -> VQAModel:
  """config.model → VQAModel; attention_impl as `build_backbone` takes it."""
  if model_config.get("detail_depth", 1) < 1:
    raise ValueError(
        f"config.model.detail_depth must be >= 1 (the filters, then 3×3 layers), got "
        f"{model_config.detail_depth}"
    )
  if not model_config.get("embedding_in_head", True) and not (
      model_config.get("detail_features") or model_config.get("statistics_region")
  ):
    raise ValueError(
        "config.model.embedding_in_head=False needs config.model.detail_features > 0 or "
        "config.model.statistics_region > 0: the quality head would read nothing"
    )
  region = model_config.get("statistics_region", 0)
  if region:
    validate_region(region, "config.model.statistics_region (the fragment size; 0 = off)")
  backbone, fusion = _spatial_modules(model_config, attention_impl)
  t = model_config.temporal
  # An argument vector (declarative): config fields to module fields, as for the fusion above.
  temporal = TemporalFusion(
      width=t.width,
      num_layers=t.num_layers,
      num_heads=t.num_heads,
      mlp_ratio=t.mlp_ratio,
      dropout=t.dropout,
      max_frames=t.max_frames,
      dtype=_dtype(model_config),
  )
  return VQAModel(
      backbone=backbone,
      spatial_fusion=fusion,
      temporal_fusion=temporal,
      head_hidden=model_config.head_hidden,
      projection_dim=model_config.projection_dim,
      freeze_backbone=model_config.freeze_backbone,
      container_dim=CONTAINER_DIM if model_config.get("container_features", False) else 0,
      detail_features=model_config.get("detail_features", 0),
      detail_depth=model_config.get("detail_depth", 1),
      embedding_in_head=model_config.get("embedding_in_head", True),
      statistics_region=region,
      dtype=_dtype(model_config),
  )


def container_features(bits_per_pixel, scale, fps, is_hevc) -> jax.Array:
  """[B] each → [B, CONTAINER_DIM]: what a streaming engineer reads off the container, scaled to
  about unit range: log bits per pixel (coded size), coded/display height, log(fps/25), HEVC flag.
  """
  columns = (
      jnp.log(jnp.maximum(jnp.asarray(bits_per_pixel, jnp.float32), 1e-6)) / 4.0,
      jnp.asarray(scale, jnp.float32),
      jnp.log(jnp.asarray(fps, jnp.float32) / 25.0),
      jnp.asarray(is_hevc, jnp.float32),
  )
  return jnp.stack(columns, axis=-1)


CONTAINER_DIM = 4


def build_iqa_model(model_config) -> IQAModel:
  """config.model → IQAModel sharing the VQA model's spatial layout."""
  backbone, fusion = _spatial_modules(model_config)
  return IQAModel(
      backbone=backbone,
      spatial_fusion=fusion,
      head_hidden=model_config.head_hidden,
      freeze_backbone=model_config.freeze_backbone,
      dtype=_dtype(model_config),
  )


def transfer_spatial_params(source: Mapping, target: Mapping) -> dict:
  """Copies the backbone and spatial-fusion subtrees of `source` params into `target` params.

  Used to start a video model from an IQA-pretrained spatial module (or from a converted ImageNet
  backbone, where `source` holds only 'backbone'). Shapes must match; a mismatch names the module.
  """
  result = dict(target)
  copied = []
  for name in SPATIAL_MODULES:
    if name not in source:
      continue
    source_shapes = traverse_util.flatten_dict(jax.tree.map(jnp.shape, source[name]), sep="/")
    target_shapes = traverse_util.flatten_dict(jax.tree.map(jnp.shape, target[name]), sep="/")
    if source_shapes != target_shapes:
      # A parameter both hold names two shapes; one only a side holds (another depth) names one.
      reshaped = [
          key
          for key in sorted(set(source_shapes) & set(target_shapes))
          if source_shapes[key] != target_shapes[key]
      ]
      differing = reshaped + sorted(set(source_shapes) ^ set(target_shapes))
      first = differing[0]
      raise ValueError(
          f"cannot transfer '{name}': {len(differing)} parameter(s) differ between the checkpoint "
          f"and the configured model, first {name}/{first}: "
          f"{source_shapes.get(first, 'absent')} in the checkpoint, "
          f"{target_shapes.get(first, 'absent')} in the model; make config.model match the "
          "model the checkpoint was trained with (a converted directory's model.json holds it)"
      )
    result[name] = source[name]
    copied.append(name)
  if not copied:
    raise ValueError(f"the source params hold none of {SPATIAL_MODULES}")
  return result

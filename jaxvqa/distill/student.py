"""The student: the quality model's own SwinV2, plus what distillation alone needs on top of it.

Each SwinV2 stage output predicts one teacher map of the same stride through a 1×1 projection
(a Dense over channels), as in feature distillation (Wei et al. 2022); the pooled feature predicts
the teacher's 1000 ImageNet classes through a LayerNorm and a Dense. Only the backbone is handed to
the quality model; the projections and the logit head are thrown away.

Stage ↔ teacher pairing (SwinV2 stage outputs follow their trailing patch merging, so strides are
8, 16, 32, 32; EfficientNet-Lite's maps are at 4, 8, 16, 32 plus the 1280-wide head at 32):

    SwinV2 stage 0 (stride 8)  → teacher stride-8 map   (40 channels for Lite0)
    SwinV2 stage 1 (stride 16) → teacher stride-16 map  (112)
    SwinV2 stage 2 (stride 32) → teacher stride-32 map  (320)
    SwinV2 stage 3 (stride 32) → teacher head           (1280)
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvqa.models.swinv2 import SwinV2
from jaxvqa.models.vqa import normalize_pixels


class StudentOutput(NamedTuple):
  maps: tuple[jax.Array, ...]  # float32 [B, h_i, w_i, teacher channels of pair i]
  logits: jax.Array  # float32 [B, num_classes]
  pooled: jax.Array  # float32 [B, C_last], the backbone's pooled feature (what probes read)


def teacher_targets(teacher_output) -> tuple[jax.Array, ...]:
  """The teacher maps the four SwinV2 stages predict, in stage order (see the module docstring)."""
  stages = teacher_output.stages  # strides 4, 8, 16, 32
  return (stages[1], stages[2], stages[3], teacher_output.head)


class DistillStudent(nn.Module):
  """pixels [B, S, S, 3] in [0, 255] → StudentOutput. S must be a multiple of 32.

  `teacher_channels`: the channels of the teacher map each SwinV2 stage predicts (4 entries).
  The backbone is a submodule named "backbone", so its parameters are exactly the tree the quality
  model's `params["backbone"]` holds.
  """

  backbone: SwinV2
  teacher_channels: Sequence[int]
  num_classes: int = 1000

  @nn.compact
  def __call__(self, pixels: jax.Array, *, train: bool = False) -> StudentOutput:
    if len(self.teacher_channels) != len(self.backbone.depths):
      raise ValueError(
          f"DistillStudent: {len(self.teacher_channels)} teacher maps for a SwinV2 of "
          f"{len(self.backbone.depths)} stages; give one per stage"
      )
    out = self.backbone(normalize_pixels(pixels, self.backbone.dtype), train=train)
    maps = tuple(
        nn.Dense(channels, name=f"project_{i}")(stage.astype(jnp.float32))
        for i, (stage, channels) in enumerate(zip(out.stages, self.teacher_channels))
    )
    pooled = out.pooled.astype(jnp.float32)
    logits = nn.Dense(self.num_classes, name="logits")(nn.LayerNorm(name="logit_norm")(pooled))
    return StudentOutput(maps=maps, logits=logits, pooled=pooled)

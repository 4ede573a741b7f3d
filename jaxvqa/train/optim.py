"""The optimizer: AdamW with linear warm-up then cosine decay, clipping, a backbone learning-rate
multiplier (or a frozen backbone), and skipping of non-finite updates. All numbers from config.optim.
"""

from __future__ import annotations

import functools
from typing import Any

import optax
from flax import traverse_util

BACKBONE = "backbone"


def learning_rate_schedule(optim_config, steps_per_epoch: int) -> optax.Schedule:
  """Linear warm-up for `warmup_epochs`, then cosine decay to 0 at `epochs`."""
  total_steps = max(1, round(optim_config["epochs"] * steps_per_epoch))
  warmup_steps = min(total_steps - 1, round(optim_config["warmup_epochs"] * steps_per_epoch))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0,
      peak_value=optim_config["learning_rate"],
      warmup_steps=max(warmup_steps, 0),
      decay_steps=total_steps,
      end_value=0.0,
  )


def _parameter_groups(params: Any) -> Any:
  """'backbone' for every leaf under the backbone module, 'head' for the rest."""
  flat = traverse_util.flatten_dict(params)
  labels = {path: BACKBONE if path[0] == BACKBONE else "head" for path in flat}
  return traverse_util.unflatten_dict(labels)


OPTIMIZER_FIELDS = (
    "learning_rate",
    "backbone_lr_multiplier",
    "weight_decay",
    "warmup_epochs",
    "epochs",
    "grad_clip_norm",
)


def build_optimizer(
    optim_config, steps_per_epoch: int, *, freeze_backbone: bool
) -> optax.GradientTransformation:
  """AdamW over the whole model; the backbone's rate is scaled by `backbone_lr_multiplier`.

  Wrapped in `optax.apply_if_finite`: a step whose gradients hold NaN or inf leaves parameters and
  moments unchanged; after `max_consecutive_nonfinite` such steps the trainer stops the run.

  Equal settings give the same object: the train state holds the optimizer as static data, so a
  new object would make every run in a process (tests, sweeps) compile its train step again.
  """
  settings = tuple((field, optim_config[field]) for field in OPTIMIZER_FIELDS)
  return _build_optimizer(settings, steps_per_epoch, freeze_backbone)


@functools.lru_cache(maxsize=16)
def _build_optimizer(
    settings: tuple, steps_per_epoch: int, freeze_backbone: bool
) -> optax.GradientTransformation:
  optim_config = dict(settings)
  schedule = learning_rate_schedule(optim_config, steps_per_epoch)

  def adamw(scale: float) -> optax.GradientTransformation:
    return optax.adamw(
        lambda step: schedule(step) * scale, weight_decay=optim_config["weight_decay"]
    )

  backbone_tx = (
      optax.set_to_zero() if freeze_backbone else adamw(optim_config["backbone_lr_multiplier"])
  )
  tx = optax.chain(
      optax.clip_by_global_norm(optim_config["grad_clip_norm"]),
      optax.multi_transform({BACKBONE: backbone_tx, "head": adamw(1.0)}, _parameter_groups),
  )
  # The budget is enforced by the trainer (it stops with a message); here skipping never gives up.
  return optax.apply_if_finite(tx, max_consecutive_errors=1_000_000)

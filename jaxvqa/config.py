"""Checks a run config before anything expensive starts; every error names the bad field.

Unknown fields are already refused by the locked ConfigDict (`--config.data.smapling=...` fails in
the flag parser); this module checks values: choices, ranges and the relations between fields.
Choice lists are imported from the modules that use them, and what an object checks itself
(`losses.LossWeights`) is checked by building it, so no rule is written twice.
"""

from __future__ import annotations

import ml_collections

from jaxvqa.train import losses
from jaxvqa.data import grouping, mixture
from jaxvqa.data.video import MODES as SAMPLING_MODES
from jaxvqa.models.fusion import TOKEN_LAYOUTS
from jaxvqa.models.swinv2 import ATTENTION_IMPLS
from jaxvqa.models.vqa import BACKBONES, DTYPES

MODEL_TASKS = ("vqa", "iqa")


class ConfigError(ValueError):
  """A config value that cannot work; the message starts with the field's dotted name."""


def require(condition: bool, field: str, message: str) -> None:
  if not condition:
    raise ConfigError(f"config.{field}: {message}")


def validate_fragments(model, data, sampling: str) -> None:
  """Raises ConfigError unless data.fragment_align is >= 1 and model.statistics_region is 0 or
  the region the model input is read in: one fragment, or the whole input (`sampling`)."""
  require(
      data.get("fragment_align", 1) >= 1,
      "data.fragment_align",
      f"must be >= 1 px, got {data.get('fragment_align')}",
  )
  region = model.get("statistics_region", 0)
  fragments = sampling == "fragments"
  expected = data.frame_size // data.get("fragment_grid", 8) if fragments else data.frame_size
  require(
      region in (0, expected),
      "model.statistics_region",
      f"({region}) must be the region the input is read in, {expected} px for {sampling} "
      "sampling (one fragment, or the whole input), or 0: the scene statistics must not cross a "
      "fragment's border",
  )


def _positive(config, field: str) -> None:
  value = _lookup(config, field)
  require(value > 0, field, f"must be > 0, got {value!r}")


def _lookup(config, field: str):
  node = config
  for part in field.split("."):
    node = node[part]
  return node


def apply_model_preset(config: ml_collections.ConfigDict) -> dict:
  """Writes config.model.preset's fields into `config` (in place; a no-op for "" or a config
  without the field). Returns {field: (old, new)} for the fields it changed.

  The preset is resolved before anything reads the model fields, so the config a run records
  (config.json) holds the architecture itself and the preset's name beside it.
  """
  name = config.model.get("preset", "")
  if not name:
    return {}
  from jaxvqa.models import swinv2_presets

  try:
    return swinv2_presets.apply_preset(config, name)
  except ValueError as error:
    raise ConfigError(f"config.model.preset: {error}") from error


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first bad field."""
  from jaxvqa.data.builders import BUILDERS  # imported late: pulls in tensorflow_datasets

  data, model, loss, optim = config.data, config.model, config.loss, config.optim
  known = [*BUILDERS, mixture.MIXTURE]
  require(
      data.builder in known, "data.builder", f"unknown data set {data.builder!r}; known: {known}"
  )
  require(
      data.sampling in SAMPLING_MODES,
      "data.sampling",
      f"must be one of {SAMPLING_MODES}, got {data.sampling!r}",
  )
  if data.builder == mixture.MIXTURE:
    problem = mixture.check_config(data)
    if problem:
      raise ConfigError(problem)
  require(
      data.demo.enabled or bool(data.manual_dir) or data.builder == mixture.MIXTURE,
      "data.manual_dir",
      "is empty: point it at a `jaxvqa make-dataset --out` directory or a public set's "
      "release, or set config.data.demo.enabled=True",
  )
  validate_fragments(model, data, data.sampling)
  for field in (
      "data.num_frames",
      "data.frame_size",
      "data.eval_batch_size",
      "optim.epochs",
      "optim.learning_rate",
      "optim.grad_clip_norm",
      "train.log_every_steps",
      "train.checkpoint_every_steps",
      "train.keep_checkpoints",
  ):
    _positive(config, field)
  has_groups = (
      data.demo.enabled
      or data.builder == mixture.MIXTURE  # the sets are its groups
      or BUILDERS[data.builder].HAS_GROUPS
  )
  problem = grouping.check_config(data, loss, has_groups=has_groups)
  if problem:
    raise ConfigError(problem)
  require(
      data.groups_per_batch >= 2,
      "data.groups_per_batch",
      f"must be >= 2 so the group contrastive loss has groups to separate, got {data.groups_per_batch}",
  )
  require(
      data.videos_per_group >= 2,
      "data.videos_per_group",
      f"must be >= 2 so each group has pairs to rank, got {data.videos_per_group}",
  )
  require(
      data.num_frames <= model.temporal.max_frames,
      "model.temporal.max_frames",
      f"({model.temporal.max_frames}) is below data.num_frames ({data.num_frames})",
  )
  fractions = data.train_fraction + data.validation_fraction
  require(
      0 < data.train_fraction and 0 <= data.validation_fraction and fractions < 1,
      "data.train_fraction",
      f"train ({data.train_fraction}) + validation ({data.validation_fraction}) fractions "
      "must leave a test share in (0, 1)",
  )
  require(
      model.task in MODEL_TASKS, "model.task", f"must be one of {MODEL_TASKS}, got {model.task!r}"
  )
  if model.task == "iqa":
    require(
        loss.group == 0,
        "loss.group",
        "must be 0 for model.task='iqa': the image model has no projection to contrast",
    )
    require(data.num_frames == 1, "data.num_frames", "must be 1 for model.task='iqa' (images)")
  require(
      model.dtype in DTYPES, "model.dtype", f"must be one of {sorted(DTYPES)}, got {model.dtype!r}"
  )
  require(
      model.fusion.token_layout in TOKEN_LAYOUTS,
      "model.fusion.token_layout",
      f"must be one of {TOKEN_LAYOUTS}, got {model.fusion.token_layout!r}",
  )
  backbone = model.backbone
  name = backbone.get("name", "swinv2")
  require(name in BACKBONES, "model.backbone.name", f"must be one of {BACKBONES}, got {name!r}")
  if name == "swinv2":
    _validate_swinv2(backbone)
  require(
      model.temporal.width % model.temporal.num_heads == 0,
      "model.temporal.num_heads",
      f"temporal width {model.temporal.width} is not divisible by {model.temporal.num_heads} heads",
  )
  try:
    losses.LossWeights(**loss)
  except (TypeError, ValueError) as error:  # its messages name the field as LossWeights.<field>
    raise ConfigError(str(error).replace("LossWeights.", "config.loss.", 1)) from error
  require(
      any(loss[name] > 0 for name in ("plcc", "l1", "rank", "all_pairs_rank")),
      "loss.plcc",
      "at least one score loss (plcc, l1, rank, all_pairs_rank) must have a positive weight",
  )
  require(0 <= optim.ema_decay < 1, "optim.ema_decay", f"must be in [0, 1), got {optim.ema_decay}")
  require(optim.warmup_epochs >= 0, "optim.warmup_epochs", "must be >= 0")
  require(optim.max_consecutive_nonfinite >= 1, "optim.max_consecutive_nonfinite", "must be >= 1")
  init = config.get("init") or {}
  require(
      not (init.get("model") and (init.get("backbone") or init.get("spatial"))),
      "init.model",
      "replaces every weight: leave config.init.backbone and config.init.spatial empty",
  )


def _validate_swinv2(backbone) -> None:
  """The SwinV2 fields of config.model.backbone."""
  require(
      len(backbone.depths) == len(backbone.num_heads) == len(backbone.pretrained_window_sizes),
      "model.backbone.depths",
      "depths, num_heads and pretrained_window_sizes need one entry per stage",
  )
  for stage, heads in enumerate(backbone.num_heads):
    width = backbone.embed_dim * 2**stage
    require(
        width % heads == 0,
        "model.backbone.num_heads",
        f"stage {stage} width {width} is not divisible by {heads} heads",
    )
  attention_impl = backbone.get("attention_impl")  # configs written before the option lack it
  require(
      attention_impl is None or attention_impl in ATTENTION_IMPLS,
      "model.backbone.attention_impl",
      f"must be one of {ATTENTION_IMPLS}, got {attention_impl!r}",
  )

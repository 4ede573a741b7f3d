"""A run's data from its config: the prepared TFDS splits, the batch sampler and the frame options.

This is the one place that reads config.data; the builders, samplers and loaders below it take
plain arguments.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from jaxvqa.data import label_scale as label_scale_lib
from jaxvqa.config import ConfigError
from jaxvqa.data import builders, demo, grouping, mixture, pipeline, video
from jaxvqa.data.builders.base import SPLIT_NAMES
from jaxvqa.data.builders.label_files import LabelFileError

TRAIN, VALIDATION, TEST = SPLIT_NAMES


@dataclasses.dataclass
class RunData:
  splits: dict[str, Any]  # split name → random-access data source
  sampler: pipeline.GroupBatchSampler | pipeline.ShuffleBatchSampler
  frames: video.FrameOptions
  steps_per_epoch: int
  manual_dir: Path
  grouping: str  # which groups the coarse stage uses, in one line (grouping.describe)
  # The stored label → the set's own units, in which every report is made (jaxvqa.data.label_scale).
  label_scale: label_scale_lib.LabelScale = label_scale_lib.VMAF


def open_run_data(data_config, *, seed: int) -> RunData:
  """Prepares (once) and opens the configured data set; builds the demo set first if asked."""
  cache = demo.cache_dir(data_config.cache_dir)
  manual_dir = (
      demo.ensure_demo_set(data_config.demo, cache)
      if data_config.demo.enabled
      else Path(data_config.manual_dir).expanduser()
  )
  data_dir = Path(data_config.data_dir).expanduser() if data_config.data_dir else cache / "tfds"
  try:
    if data_config.builder == mixture.MIXTURE:
      splits, manual_dir = mixture.open_mixture(data_config, data_dir, builders.prepare)
      scale = label_scale_lib.MIXED
    else:
      builder = builders.prepare(
          data_config.builder,
          manual_dir,
          data_dir,
          seed=data_config.split_seed,
          train_fraction=data_config.train_fraction,
          validation_fraction=data_config.validation_fraction,
          test_fraction=round(
              1.0 - data_config.train_fraction - data_config.validation_fraction, 6
          ),
      )
      splits = {name: builder.as_data_source(name) for name in builder.info.splits}
      scale = builder.label_scale(manual_dir)
  except (builders.ManualDataMissingError, LabelFileError) as error:
    # The user's files, not a crash: one line naming the field (train.py exits 2 on it).
    where = (
        "config.data.mixture"
        if data_config.builder == mixture.MIXTURE
        else f"config.data.manual_dir={str(manual_dir)!r}"
    )
    raise ConfigError(f"{where}: {error}") from error
  if TRAIN not in splits or len(splits[TRAIN]) == 0:
    raise ValueError(f"data set {data_config.builder!r} in {manual_dir} has no training examples")
  table = pipeline.read_example_table(splits[TRAIN])
  chosen = data_config.get("grouping", "set")
  if chosen == "mos_quantile":
    groups = grouping.quantile_groups(table.labels, data_config.quality_levels)
    splits[TRAIN] = grouping.RegroupedSource(splits[TRAIN], groups)
    table = dataclasses.replace(table, groups=groups)
  described = grouping.describe(chosen, data_config.builder, table.labels, table.groups, scale)
  global_batch_size = data_config.groups_per_batch * data_config.videos_per_group
  if len(set(table.groups.tolist())) > 1:
    sampler = pipeline.GroupBatchSampler(
        table.groups,
        table.sources,
        groups_per_batch=data_config.groups_per_batch,
        videos_per_group=data_config.videos_per_group,
        seed=seed,
    )
  else:
    sampler = pipeline.ShuffleBatchSampler(len(splits[TRAIN]), global_batch_size, seed=seed)
  return RunData(
      splits=splits,
      sampler=sampler,
      frames=video.FrameOptions.from_data_config(data_config),
      steps_per_epoch=max(1, math.ceil(len(splits[TRAIN]) / global_batch_size)),
      manual_dir=manual_dir,
      grouping=described,
      label_scale=scale,
  )

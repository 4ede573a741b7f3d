"""Groups for the coarse stage (the group contrastive loss) on sets that carry none.

The paper's groups are the bitrate rungs of compressed versions of one source (docs/METHOD.md);
the compressed builder stores them. Public MOS sets (KoNViD-1k, LIVE-VQC, YouTube-UGC, LSVQ) have
one video per source and no rungs, so every record's group is 0 and the group loss would be 0 at
every step. `config.data.grouping` says what groups such a set gets:

- "set": the set's own groups (bitrate rungs). Refused at config time for a set without groups
  while config.loss.group > 0 (`check_config`).
- "mos_quantile": `quality_levels` equal-count quality levels of the training split, by MOS rank:
  the coarse stage then pulls together videos of similar quality and pushes apart distant levels,
  which is what the bitrate rungs stand for in the paper (rungs order quality within a source).
  Ties at a boundary are split by index order so every level keeps its share.

Only the training split is regrouped: groups feed the training losses and the batch sampler,
never the evaluation.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from jaxvqa.data.mixture import MIXTURE

GROUPINGS = ("set", "mos_quantile")


def quantile_groups(labels: np.ndarray, levels: int) -> np.ndarray:
  """int32 [N]: the quality level (0 = lowest label) of each of `labels` [N], in `levels`
  equal-count levels by rank."""
  labels = np.asarray(labels, np.float64)
  order = np.argsort(labels, kind="stable")
  groups = np.empty(len(labels), np.int32)
  groups[order] = (np.arange(len(labels)) * levels) // max(len(labels), 1)
  return groups


def level_edges(labels: np.ndarray, groups: np.ndarray) -> list[float]:
  """The lowest label of each level above the first: where the levels begin."""
  return [float(np.min(labels[groups == g])) for g in range(1, int(groups.max()) + 1)]


class RegroupedSource:
  """A random-access data source whose records carry `groups[i]` as their "group"."""

  def __init__(self, data_source: Any, groups: np.ndarray):
    if len(groups) != len(data_source):
      raise ValueError(f"{len(groups)} groups for a data source of {len(data_source)} records")
    self.data_source, self.groups = data_source, np.asarray(groups, np.int32)

  def __len__(self) -> int:
    return len(self.data_source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return {**self.data_source[index], "group": self.groups[int(index)]}

  def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
    records = (
        self.data_source.__getitems__(indices)
        if hasattr(self.data_source, "__getitems__")
        else [self.data_source[int(i)] for i in indices]
    )
    return [{**r, "group": self.groups[int(i)]} for r, i in zip(records, indices)]


def check_config(data, loss, has_groups: bool) -> str | None:
  """The one-line problem with config.data.grouping / quality_levels / loss.group, or None."""
  grouping = data.get("grouping", "set")
  if grouping not in GROUPINGS:
    return f"config.data.grouping: must be one of {GROUPINGS}, got {grouping!r}"
  if grouping == "set" and loss.group > 0 and not has_groups:
    return (
        f"config.loss.group: {loss.group} weighs the group contrastive loss, but data set "
        f"{data.builder!r} has no bitrate groups (it would be 0 at every step); set "
        "config.data.grouping='mos_quantile' (quality levels by MOS) or config.loss.group=0"
    )
  if grouping == "mos_quantile" and data.get("quality_levels", 0) < data.groups_per_batch:
    return (
        f"config.data.quality_levels: {data.get('quality_levels')} levels cannot fill "
        f"groups_per_batch={data.groups_per_batch} groups per batch; give at least that many"
    )
  return None


def describe(
    grouping: str, builder: str, labels: np.ndarray, groups: np.ndarray, scale=None
) -> str:
  """One line for the run's log and results: which groups the coarse stage used.

  labels, groups: [N] of the training split, after any regrouping. scale: the set's
  label_scale.LabelScale, so the level boundaries read in its published units (MOS 1-5, DMOS);
  without it they are the stored 0-1 labels.
  """
  count = len(np.unique(groups))
  if grouping == "mos_quantile":
    edges = level_edges(labels, groups)
    if scale is not None and scale.rescaled:
      units = scale.describe()
      edges = scale.to_units(edges).tolist()
    else:
      units = "the stored 0-1 labels"
    return (
        f"mos_quantile: {count} equal-count quality levels of the training split of {builder!r} "
        f"by MOS rank (levels start at {', '.join(f'{e:.4g}' for e in edges)} in {units})"
    )
  if builder == MIXTURE:
    return f"set: one group per image set of the mixture ({count} sets)"
  if count < 2:
    return f"set: {builder!r} has no groups (every record is in group 0)"
  return f"set: the {count} groups {builder!r} carries (bitrate rungs)"

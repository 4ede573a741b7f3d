"""Which encodes each fold trains and tests on, and what one training step draws (host side).

    family ids ─assign_folds─▶ fold of each family (every family tested exactly once)
    (stage, step) ─HostSampler.draw─▶ index arrays per fold: videos, groups, frame picks,
                                      fragment origins, flips (the device cuts the clips)

Used by the K-fold protocol (jaxvqa/kfold/protocol.py); the device side is jaxvqa/kfold/stacked.py.
"""

from __future__ import annotations

import numpy as np

from jaxvqa.data import decoded as decoded_lib
from jaxvqa.data import video
from jaxvqa.data.device_clips import Layout
from jaxvqa.kfold.stacked import FINETUNE, PRETRAIN


def assign_folds(family: np.ndarray, num_folds: int, seed: int) -> np.ndarray:
  """int [N] family ids → int [num_families] fold of each family.

  Families are shuffled (seeded), then dealt largest first to the fold with fewest encodes, so
  folds hold similar numbers of encodes and every family is in exactly one fold.
  """
  counts = np.bincount(family)
  num_families = len(counts)
  if num_families < num_folds:
    raise ValueError(
        f"{num_families} families cannot fill {num_folds} folds: lower "
        "config.kfold.folds or make a larger corpus"
    )
  order = np.random.default_rng(seed).permutation(num_families)
  order = order[np.argsort(-counts[order], kind="stable")]
  fold_of, load = np.zeros(num_families, np.int64), np.zeros(num_folds, np.int64)
  for family_id in order:
    target = int(np.argmin(load))
    fold_of[family_id] = target
    load[target] += counts[family_id]
  return fold_of


class HostSampler:
  """Draws, per fold, the encodes, frames, fragment origins and flips of one step (numpy).

  Randomness is a function of (seed, stage, step), so a resumed run draws what an uninterrupted
  one would have.
  """

  def __init__(
      self,
      data: decoded_lib.DecodedSet,
      train_sets: list[np.ndarray],
      layout: Layout,
      *,
      groups: int,
      per_group: int,
      seed: int,
  ):
    self.data, self.layout, self.seed = data, layout, seed
    self.groups, self.per_group = groups, per_group
    # VMAF batches are sources × rungs (docs/METHOD.md §3): every source of a
    # batch appears at every rung of it, so the batch holds the within-source contrasts that
    # compression makes, not only content differences between rungs.
    num_rungs = int(data.rung.max()) + 1
    if num_rungs < groups:
      raise ValueError(
          f"the set has {num_rungs} bitrate groups (rungs); "
          f"config.data.groups_per_batch={groups} needs that many"
      )
    self.ladders = [self._ladders(indices, num_rungs) for indices in train_sets]
    # Free-label tuples: encodes of one source, codec and resolution, ordered by bitrate.
    self.tuples = []
    for indices in train_sets:
      keys = np.stack(
          [
              data.source[indices],
              data.codec[indices],
              np.round(data.scale[indices] * 1000).astype(np.int64),
          ],
          axis=1,
      )
      _, tuple_id = np.unique(keys, axis=0, return_inverse=True)
      self.tuples.append([indices[tuple_id.reshape(-1) == t] for t in range(tuple_id.max() + 1)])
    self.tuple_size = min(len(members) for per_fold in self.tuples for members in per_fold)
    for fold, ladders in enumerate(self.ladders):
      if len(ladders[0]) < per_group:
        raise ValueError(
            f"fold {fold}: {len(ladders[0])} training sources have every rung; "
            f"config.data.videos_per_group={per_group} needs that many"
        )

  def _ladders(
      self, indices: np.ndarray, num_rungs: int
  ) -> tuple[np.ndarray, list[list[list[int]]]]:
    """(sources with all `num_rungs` rungs, encodes[source][rung] — one per codec)."""
    data = self.data
    encodes: dict[int, list[list[int]]] = {}
    for index in indices:
      encodes.setdefault(int(data.source[index]), [[] for _ in range(num_rungs)])[
          int(data.rung[index])
      ].append(int(index))
    complete = sorted(source for source, rungs in encodes.items() if all(rungs))
    return np.asarray(complete, np.int64), [encodes[source] for source in complete]

  @property
  def batch_size(self) -> int:
    return self.groups * self.per_group

  def _rng(self, stage: str, step: int) -> np.random.Generator:
    return np.random.default_rng([self.seed, (PRETRAIN, FINETUNE).index(stage), step])

  def _free_label_batch(self, fold: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Whole tuples (one source, codec, resolution at several bitrates), a group each; a batch
    that tuples do not fill is padded with singleton groups, which form no rank pairs."""
    per_tuple = min(self.tuple_size, self.batch_size)
    count = self.batch_size // per_tuple
    chosen = rng.choice(len(self.tuples[fold]), count, replace=False)
    videos = np.concatenate(
        [rng.choice(self.tuples[fold][t], per_tuple, replace=False) for t in chosen]
    )
    groups = np.repeat(np.arange(count), per_tuple)
    pad = self.batch_size - len(videos)
    return (
        np.concatenate([videos, videos[:pad]]),
        np.concatenate([groups, count + np.arange(pad)]),
    )

  def _group_batch(self, fold: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """`groups` rungs × the same `per_group` sources (a random codec per cell), group-major."""
    sources, encodes = self.ladders[fold]
    rungs = rng.choice(len(encodes[0]), self.groups, replace=False)
    chosen = rng.choice(len(sources), self.per_group, replace=False)
    videos = [encodes[s][r][rng.integers(len(encodes[s][r]))] for r in rungs for s in chosen]
    return np.asarray(videos), np.repeat(rungs, self.per_group)

  def draw(self, stage: str, step: int) -> dict[str, np.ndarray]:
    """Index arrays for every fold: video [K, B], group [K, B], frame picks [K, B, T],
    fragment origins rows/cols [K, B, g], flip [K, B]; `rank_label` [K, B] for the free labels."""
    rng = self._rng(stage, step)
    batch_of = self._free_label_batch if stage == PRETRAIN else self._group_batch
    videos, groups = zip(*(batch_of(fold, rng) for fold in range(len(self.ladders))))
    rank_label = [np.log(self.data.bits_per_pixel[fold_videos]) for fold_videos in videos]
    num_folds, batch = len(videos), self.batch_size
    layout = self.layout
    stored = self.data.frames.shape[1]
    starts = (np.arange(layout.num_frames) * stored) // layout.num_frames
    stops = np.maximum(
        ((np.arange(layout.num_frames) + 1) * stored) // layout.num_frames, starts + 1
    )
    picks = rng.integers(starts, stops, size=(num_folds, batch, layout.num_frames))
    patch = layout.size // layout.grid
    size = (num_folds, batch)
    rows = video.fragment_origins(layout.height, layout.grid, patch, rng, size, layout.align)
    cols = video.fragment_origins(layout.width, layout.grid, patch, rng, size, layout.align)
    return {
        "video": np.stack(videos).astype(np.int32),
        "group": np.stack(groups).astype(np.int32),
        "picks": picks.astype(np.int32),
        "rows": rows.astype(np.int32),
        "cols": cols.astype(np.int32),
        "flip": rng.random((num_folds, batch)) < 0.5,
        "rank_label": np.stack(rank_label).astype(np.float32),
    }

"""Several image-quality sets as one training set: multi-set IQA pre-training (configs/iqa_multiset.py).

    config.data.builder = "iqa_mixture"
    config.data.mixture = {"koniq_10k": DIR, "kadid_10k": DIR, "live_iqa": DIR, "clive": DIR}

Each named set is prepared as on its own (its split by content, its label file) and the splits
are joined. Every record's group is its set's index, so that:

- **batches mix sets**: the group sampler draws `groups_per_batch` sets × `videos_per_group`
  images per step; with groups_per_batch = the number of sets, every batch holds the same number
  of images of each set, small sets (LIVE IQA's 779) as much as large ones (KonIQ-10k's 10,073);
- **scales never meet**: the config trains with the in-group rank loss alone (`loss.rank`; group
  = set), so only images of one set are compared, by order, never one set's MOS against
  another's. This is the choice of UNIQUE (Zhang et al., TIP 2021), which trains one IQA model on
  several sets by pairs drawn within each set because their scales (MOS 1-5, 0-100, DMOS, DCR)
  and their perceptual ranges differ; rescaling labels to a common range (the other option)
  would equate "worst in KADID" with "worst in KonIQ", which no study measured.

Names become "<set dir relative to the sets' common parent>/<name>", and the run's manual_dir is
that parent, so evaluation's per-image paths still point at the files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

MIXTURE = "iqa_mixture"  # config.data.builder value
IMAGE_SETS = ("koniq_10k", "kadid_10k", "live_iqa", "clive")


def chosen_sets(mixture) -> dict[str, Path]:
  """{builder name: manual_dir} of the sets config.data.mixture names (a "" dir is unused)."""
  return {name: Path(str(d)).expanduser() for name, d in dict(mixture).items() if d}


def check_config(data) -> str | None:
  """The one-line problem with a mixture config, or None."""
  sets = chosen_sets(data.get("mixture") or {})
  unknown = sorted(set(sets) - set(IMAGE_SETS))
  if unknown:
    return f"config.data.mixture: {unknown} are not image sets; known: {list(IMAGE_SETS)}"
  if len(sets) < 2:
    return (
        "config.data.mixture: name at least two image sets' manual_dirs (e.g. "
        "--config.data.mixture.koniq_10k=/data/koniq10k); one set is config.data.builder=NAME"
    )
  if data.get("grouping", "set") != "set":
    return "config.data.grouping: must be 'set' for a mixture, whose groups are its sets"
  if data.groups_per_batch > len(sets):
    return (
        f"config.data.groups_per_batch: {data.groups_per_batch} sets per batch, but the "
        f"mixture has {len(sets)}"
    )
  return None


class MixedSource:
  """Random access over several data sources in turn; record i of part k gets group k and its
  name and source prefixed with the part's prefix."""

  def __init__(self, parts: Sequence[Any], prefixes: Sequence[str]):
    self.parts, self.prefixes = list(parts), list(prefixes)
    self.starts = [0]
    for part in self.parts:
      self.starts.append(self.starts[-1] + len(part))

  def __len__(self) -> int:
    return self.starts[-1]

  def _locate(self, index: int) -> tuple[int, int]:
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(f"index {index} out of range for {len(self)} records")
    part = next(k for k in range(len(self.parts)) if index < self.starts[k + 1])
    return part, index - self.starts[part]

  def __getitem__(self, index: int) -> dict[str, Any]:
    part, local = self._locate(index)
    return self._mark(part, self.parts[part][local])

  def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
    return [self[i] for i in indices]

  def _mark(self, part: int, record: dict[str, Any]) -> dict[str, Any]:
    prefix = self.prefixes[part]
    return {
        **record,
        "group": part,
        "name": f"{prefix}/{_text(record['name'])}",
        "source": f"{prefix}/{_text(record['source'])}",
    }


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def open_mixture(data_config, data_dir: Path, prepare) -> tuple[dict[str, MixedSource], Path]:
  """({split: MixedSource}, the sets' common parent directory). `prepare` is
  `builders.prepare`, taking (name, manual_dir, data_dir, **split config)."""
  sets = chosen_sets(data_config.mixture)
  parent = Path(os.path.commonpath([str(d.absolute()) for d in sets.values()]))
  by_split: dict[str, list] = {}
  prefixes: dict[str, list] = {}
  for name, manual_dir in sets.items():
    builder = prepare(
        name,
        manual_dir,
        data_dir,
        seed=data_config.split_seed,
        train_fraction=data_config.train_fraction,
        validation_fraction=data_config.validation_fraction,
        test_fraction=round(1.0 - data_config.train_fraction - data_config.validation_fraction, 6),
    )
    prefix = manual_dir.absolute().relative_to(parent).as_posix()
    prefix = name if prefix == "." else prefix
    for split in builder.info.splits:
      by_split.setdefault(split, []).append(builder.as_data_source(split))
      prefixes.setdefault(split, []).append(prefix)
  return {s: MixedSource(parts, prefixes[s]) for s, parts in by_split.items()}, parent

"""Grain input pipeline: batch samplers, per-process shards, decoding in loader workers.

    data source (TFDS ArrayRecord, random access)
      sampler: step ──▶ global batch of indices   (pure function of (seed, step))
      ──▶ this process's contiguous slice
      ──▶ decode each example (video: `video.load_clip`; image: PIL), in Grain workers
      ──▶ {"frames": uint8 [B, T, S, S, 3], "label": float32 [B], "group": int32 [B],
           "mask": bool [B], "index": int32 [B]}        (B = global batch / process count)

Batch k of a training run is `sampler.batch_indices(k)`, computed directly: a resumed run
passes `start_step=k` and continues the stream exactly, so a checkpoint needs only the
step. Augmentation randomness is seeded by (seed, step, position in the global batch),
so a resumed or re-sharded run decodes the very same clips.

Two samplers:
- `GroupBatchSampler` (compressed sets): G bitrate groups x M videos per global batch, so
  the group-contrastive and in-group rank losses always see >= 2 groups of >= 2 members.
  Within a step, sources are ranked once at random and every group takes its M
  best-ranked distinct sources, so the batch tends to be "the same M sources at G
  bitrates" (docs/METHOD.md's 2 sources x 4 rungs), falling back to other sources (and then to
  repeated sources) where a group lacks them.
- `ShuffleBatchSampler` (public sets without groups): epoch-wise seeded permutations.

Decode failures (`decode.VideoDecodeError`, also raised for unreadable images) are logged
with the example's name and reason. Training replaces the video by the next example of its
group in index order (wrapping around) that is not already in the global batch and
decodes; evaluation marks it mask=False (frames zero) and goes on; `count_dropped` counts
those. Padding entries of the last evaluation batch have index -1.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import sys
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import grain
import numpy as np

from jaxvqa.data import decode, video
from jaxvqa.data.video import FrameOptions

log = logging.getLogger(__name__)

DataSource = Sequence[dict[str, Any]]


def text(value: str | bytes) -> str:
  """TFDS Text features come back from an ArrayRecord source as bytes."""
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


@dataclasses.dataclass(frozen=True)
class ExampleTable:
  """What the samplers need to know of every example, without the media.

  groups: int32 [N] (0 where the set has no groups); sources: int32 [N], codes into
  source_names; names: the examples' file names; labels: float32 [N].
  """

  groups: np.ndarray
  sources: np.ndarray
  source_names: tuple[str, ...]
  names: tuple[str, ...]
  labels: np.ndarray


def read_records(
    data_source: DataSource, indices: Sequence[int], chunk: int = 256
) -> Iterator[dict[str, Any]]:
  """The records at `indices`, in order, read `chunk` at a time (one `__getitems__` call each
  where the source has it: an ArrayRecord source reads a chunk in one pass)."""
  for start in range(0, len(indices), chunk):
    keys = [int(i) for i in indices[start : start + chunk]]
    yield from (
        data_source.__getitems__(keys)
        if hasattr(data_source, "__getitems__")
        else [data_source[k] for k in keys]
    )


def read_example_table(data_source: DataSource, chunk: int = 256) -> ExampleTable:
  """Scans `data_source` once (this reads every record, media included)."""
  groups, sources, names, labels = [], [], [], []
  for record in read_records(data_source, range(len(data_source)), chunk):
    groups.append(int(record.get("group", 0)))
    labels.append(float(record["label"]))
    sources.append(text(record["source"]))
    names.append(text(record["name"]))
  source_names, codes = np.unique(np.array(sources, dtype=object).astype(str), return_inverse=True)
  return ExampleTable(
      groups=np.asarray(groups, np.int32),
      sources=codes.astype(np.int32).reshape(-1),
      source_names=tuple(source_names),
      names=tuple(names),
      labels=np.asarray(labels, np.float32),
  )


class BatchSampler(Protocol):
  """A pure function of (seed, step) to the indices of one global batch."""

  global_batch_size: int

  def batch_indices(self, step: int) -> np.ndarray:
    """int64 [global_batch_size] indices into the data source."""

  def replacements(self, index: int) -> np.ndarray:
    """int64 [K]: who stands in for `index` when it fails to decode, in order of preference."""


class GroupBatchSampler:
  """Global batches of `groups_per_batch` groups x `videos_per_group` videos (group-major)."""

  def __init__(
      self,
      groups: np.ndarray,
      sources: np.ndarray,
      *,
      groups_per_batch: int,
      videos_per_group: int,
      seed: int,
  ):
    """groups, sources: int [N] per example (e.g. `ExampleTable.groups` / `.sources`)."""
    if groups_per_batch < 2 or videos_per_group < 2:
      raise ValueError(
          f"groups_per_batch={groups_per_batch}, videos_per_group={videos_per_group}: both must "
          "be >= 2, or the group-contrastive and rank losses have nothing to compare"
      )
    self.groups = np.asarray(groups, np.int64)
    self.sources = np.asarray(sources, np.int64)
    self.groups_per_batch = groups_per_batch
    self.videos_per_group = videos_per_group
    self.global_batch_size = groups_per_batch * videos_per_group
    self.seed = seed
    self.members = {int(g): np.flatnonzero(self.groups == g) for g in np.unique(self.groups)}
    self.eligible = np.array(
        sorted(g for g, m in self.members.items() if len(m) >= videos_per_group), np.int64
    )
    if len(self.eligible) < groups_per_batch:
      sizes = {g: len(m) for g, m in self.members.items()}
      raise ValueError(
          f"a batch needs {groups_per_batch} groups with >= {videos_per_group} examples each, "
          f"but the set has only {len(self.eligible)} (examples per group: {sizes}); lower "
          "groups_per_batch / videos_per_group or add sources"
      )
    self.num_sources = int(self.sources.max()) + 1 if len(self.sources) else 0

  def batch_indices(self, step: int) -> np.ndarray:
    rng = np.random.default_rng([self.seed, step])
    chosen = np.sort(rng.choice(self.eligible, size=self.groups_per_batch, replace=False))
    source_rank = rng.permutation(self.num_sources)
    picked = []
    for group in chosen:
      members = self.members[int(group)]
      tiebreak = rng.random(len(members))
      order = members[np.lexsort((tiebreak, source_rank[self.sources[members]]))]
      # First one encode per distinct source (best-ranked first), then fill with the rest.
      _, first_of_source = np.unique(self.sources[order], return_index=True)
      distinct = order[np.sort(first_of_source)]
      rest = order[~np.isin(order, distinct)]
      picked.append(np.concatenate([distinct, rest])[: self.videos_per_group])
    return np.concatenate(picked)

  def replacements(self, index: int) -> np.ndarray:
    members = self.members[int(self.groups[index])]
    after = np.searchsorted(members, index, side="right")
    return np.concatenate([members[after:], members[:after]])[: len(members) - 1]


class ShuffleBatchSampler:
  """Global batches of a seeded permutation per epoch (for sets without groups).

  Position p = step * B + i of the stream is example perm_e[p mod N] with e = p div N and
  perm_e = permutation(N) seeded by (seed, e): every epoch visits each example once.
  """

  def __init__(self, num_examples: int, global_batch_size: int, *, seed: int):
    if num_examples < 1:
      raise ValueError("the data source is empty")
    self.num_examples = num_examples
    self.global_batch_size = global_batch_size
    self.seed = seed

  def batch_indices(self, step: int) -> np.ndarray:
    positions = step * self.global_batch_size + np.arange(self.global_batch_size)
    epochs = positions // self.num_examples
    indices = np.empty(self.global_batch_size, np.int64)
    for epoch in np.unique(epochs):
      permutation = np.random.default_rng([self.seed, int(epoch)]).permutation(self.num_examples)
      here = epochs == epoch
      indices[here] = permutation[positions[here] % self.num_examples]
    return indices

  def replacements(self, index: int) -> np.ndarray:
    return (index + 1 + np.arange(self.num_examples - 1)) % self.num_examples


def process_slice(global_batch_size: int, process_index: int, process_count: int) -> slice:
  """This process's contiguous part of every global batch (jax.process_index/count)."""
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} outside [0, {process_count})")
  if global_batch_size % process_count:
    raise ValueError(
        f"global batch {global_batch_size} does not split over {process_count} processes; make "
        "it a multiple of the process count"
    )
  per_process = global_batch_size // process_count
  return slice(process_index * per_process, (process_index + 1) * per_process)


def load_image(
    data: bytes,
    *,
    size: int,
    train: bool,
    rng: np.random.Generator | None,
    mode: str = "resize_crop",
    fragment_grid: int = 8,
    fragment_align: int = 1,
    hflip: bool = True,
) -> np.ndarray:
  """An encoded image as a one-frame clip, prepared as `video.load_clip` prepares frames.

  Returns uint8 [1, S, S, 3]. Raises decode.VideoDecodeError for unreadable bytes.
  """
  from PIL import Image

  try:
    with Image.open(io.BytesIO(data)) as image:
      frame = np.asarray(image.convert("RGB"))[None]
  except (OSError, ValueError) as error:  # PIL.UnidentifiedImageError is an OSError
    raise decode.VideoDecodeError(
        f"<{len(data)} bytes in memory>: not an image PIL can read ({error})"
    ) from error
  return video.prepare_clip(
      frame,
      size,
      train=train,
      rng=rng,
      mode=mode,
      hflip=hflip,
      fragment_grid=fragment_grid,
      fragment_align=fragment_align,
  )


def media_frames(example: dict[str, Any], frames: FrameOptions) -> int:
  """T of the batches of a data source: 1 for image sets, num_frames for video sets."""
  return frames.num_frames if "video" in example else 1


def decode_example(
    example: dict[str, Any],
    frames: FrameOptions,
    *,
    train: bool,
    rng: np.random.Generator | None,
    decode_threads: int = 1,
) -> np.ndarray:
  """uint8 [T, S, S, 3] from a data-source record holding "video" or "image" bytes.

  A lower rung of a `make-dataset --scales` ladder (its encode_width × encode_height is not its
  width × height) is decoded at its display size as VMAF judged it, so it trains and evaluates on
  the frames its label was measured on, as in the K-fold protocol and `jaxvqa score
  --display-size`.
  """
  if "video" in example:
    return video.load_clip(
        example["video"],
        num_frames=frames.num_frames,
        size=frames.size,
        train=train,
        rng=rng,
        mode=frames.mode,
        fragment_grid=frames.fragment_grid,
        fragment_align=frames.fragment_align,
        num_threads=decode_threads,
        display_size=_display_size(example),
    )
  return load_image(
      example["image"],
      size=frames.size,
      train=train,
      rng=rng,
      mode=frames.mode,
      fragment_grid=frames.fragment_grid,
      fragment_align=frames.fragment_align,
  )


def _display_size(example: dict[str, Any]) -> tuple[int, int] | None:
  """(width, height) a lower ladder rung is shown at; None for a record read as coded (another
  kind of set, or an encode at its display size)."""
  if "encode_width" not in example:
    return None
  shown = int(example["width"]), int(example["height"])
  return None if (int(example["encode_width"]), int(example["encode_height"])) == shown else shown


def _log_failure(example: dict[str, Any], index: int, error: Exception, action: str) -> None:
  log.warning(
      "cannot decode %s (index %d): %s; %s", text(example.get("name", "?")), index, error, action
  )


def _empty_batch(size: int, clip_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
  return {
      "frames": np.zeros((size, *clip_shape), np.uint8),
      "label": np.zeros(size, np.float32),
      "group": np.zeros(size, np.int32),
      "mask": np.zeros(size, bool),
      "index": np.full(size, -1, np.int32),
  }


@dataclasses.dataclass(frozen=True)
class TrainBatch:
  """Grain map function: training step -> this process's batch. Runs in loader workers."""

  data_source: DataSource
  sampler: BatchSampler
  frames: FrameOptions
  seed: int
  shard: slice
  clip_shape: tuple[int, ...]
  decode_threads: int = 1

  def __call__(self, step: int) -> dict[str, np.ndarray]:
    step = int(step)
    global_indices = self.sampler.batch_indices(step)
    positions = np.arange(len(global_indices))[self.shard]
    batch = _empty_batch(len(positions), self.clip_shape)
    for slot, position in enumerate(positions):
      rng = np.random.default_rng([self.seed, step, int(position)])
      index, example, clip = self._load(int(global_indices[position]), global_indices, rng)
      _fill_slot(batch, slot, index, example)
      batch["frames"][slot] = clip
      batch["mask"][slot] = True
    return batch

  def _load(self, index: int, taken: np.ndarray, rng: np.random.Generator):
    candidates = [index] + [int(i) for i in self.sampler.replacements(index) if i not in taken]
    state = rng.bit_generator.state
    for candidate in candidates:
      example = self.data_source[candidate]
      rng.bit_generator.state = state  # a stand-in gets the augmentation the original would
      try:
        return (
            candidate,
            example,
            decode_example(
                example, self.frames, train=True, rng=rng, decode_threads=self.decode_threads
            ),
        )
      except decode.VideoDecodeError as error:
        _log_failure(example, candidate, error, "trying the next video of its group")
    raise RuntimeError(
        f"no video of the group of index {index} decodes ({len(candidates)} tried); see the "
        "warnings above for each file"
    )


# Declarative data: its fields alike in shape to TrainBatch's; each loads its own way.
@dataclasses.dataclass(frozen=True)
class EvalBatch:
  """Grain map function: evaluation batch number -> this process's batch (padded, masked)."""

  data_source: DataSource
  frames: FrameOptions
  global_batch_size: int
  shard: slice
  clip_shape: tuple[int, ...]
  decode_threads: int = 1

  def __call__(self, batch_number: int) -> dict[str, np.ndarray]:
    start = int(batch_number) * self.global_batch_size
    indices = np.arange(start, start + self.global_batch_size)[self.shard]
    batch = _empty_batch(len(indices), self.clip_shape)
    for slot, index in enumerate(indices):
      if index >= len(self.data_source):
        continue  # padding: index -1, mask False
      example = self.data_source[int(index)]
      _fill_slot(batch, slot, int(index), example)
      try:
        batch["frames"][slot] = decode_example(
            example, self.frames, train=False, rng=None, decode_threads=self.decode_threads
        )
      except decode.VideoDecodeError as error:
        _log_failure(example, int(index), error, "left out of the evaluation (mask False)")
        continue
      batch["mask"][slot] = True
    return batch


def _fill_slot(
    batch: dict[str, np.ndarray], slot: int, index: int, example: dict[str, Any]
) -> None:
  """The example's index, label and group in `slot`; frames and mask are the caller's."""
  batch["index"][slot] = index
  batch["label"][slot] = example["label"]
  batch["group"][slot] = example.get("group", 0)


def count_dropped(batch: dict[str, np.ndarray]) -> int:
  """Examples of an evaluation batch that failed to decode (not padding)."""
  return int(np.sum((batch["index"] >= 0) & ~batch["mask"]))


def num_eval_batches(num_examples: int, global_batch_size: int) -> int:
  return -(-num_examples // global_batch_size)


def _ensure_absl_flags_parsed() -> None:
  # Grain's worker processes read absl flags; outside an absl app nobody parsed them and
  # Grain fails with UnparsedFlagAccessError. Defaults are what we want.
  from absl import flags

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def _to_iter(
    dataset: grain.MapDataset, *, num_workers: int, read_threads: int, prefetch: int
) -> grain.IterDataset:
  iterable = dataset.to_iter_dataset(
      grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch)
  )
  if num_workers > 0:
    _ensure_absl_flags_parsed()
    iterable = iterable.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=prefetch)
    )
  return iterable


def train_loader(
    data_source: DataSource,
    sampler: BatchSampler,
    frames: FrameOptions,
    *,
    seed: int,
    start_step: int = 0,
    num_steps: int | None = None,
    process_index: int = 0,
    process_count: int = 1,
    num_workers: int = 0,
    read_threads: int = 1,
    prefetch: int = 2,
    decode_threads: int = 1,
) -> grain.IterDataset:
  """The training stream from `start_step`: batches for steps start_step, start_step + 1, ...

  Args:
    data_source: random-access records (e.g. `builder.as_data_source("train")`).
    sampler: `GroupBatchSampler` or `ShuffleBatchSampler` (gives the global batch size).
    frames: frame count, size and mode; training offsets and flips are on.
    seed: seeds augmentation (the sampler has its own seed).
    num_steps: length of the stream; None for practically endless.
    process_index, process_count: this host's slice of every global batch.
    num_workers: Grain worker processes decoding batches; 0 decodes in this process
      (with `read_threads` threads).
  Returns:
    a Grain IterDataset of batch dicts (see module doc).
  """
  shard = process_slice(sampler.global_batch_size, process_index, process_count)
  stop = sys.maxsize if num_steps is None else start_step + num_steps
  clip_shape = (media_frames(data_source[0], frames), frames.size, frames.size, 3)
  dataset = grain.MapDataset.range(start_step, stop).map(
      TrainBatch(data_source, sampler, frames, seed, shard, clip_shape, decode_threads)
  )
  return _to_iter(dataset, num_workers=num_workers, read_threads=read_threads, prefetch=prefetch)


def eval_loader(
    data_source: DataSource,
    frames: FrameOptions,
    *,
    global_batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
    num_workers: int = 0,
    read_threads: int = 1,
    prefetch: int = 2,
    decode_threads: int = 1,
) -> grain.IterDataset:
  """One pass over every example in index order; the last batch padded (mask False).

  Global batch b holds indices [b * global_batch_size, (b + 1) * global_batch_size); each
  process gets its contiguous slice, so all processes together see each example once.
  """
  shard = process_slice(global_batch_size, process_index, process_count)
  clip_shape = (media_frames(data_source[0], frames), frames.size, frames.size, 3)
  dataset = grain.MapDataset.range(num_eval_batches(len(data_source), global_batch_size)).map(
      EvalBatch(data_source, frames, global_batch_size, shard, clip_shape, decode_threads)
  )
  return _to_iter(dataset, num_workers=num_workers, read_threads=read_threads, prefetch=prefetch)

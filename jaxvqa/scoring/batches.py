"""Many files scored in fixed-size batches over all devices, decoding overlapped with the model.

Decode workers (threads: decord and PIL release the GIL) run ahead of the batch being scored,
and batch k+1 is dispatched before the scores of batch k are fetched. Every call has the same
shape (the last batch is padded), so there is one compilation and a file's score does not depend
on the device count or on the other files of the run.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from jaxvqa.serve.inference import DEFAULT_PER_DEVICE_BATCH, TrainedModel
from jaxvqa.scoring.decoding import DecodedVideo, check_display_size, decode_or_failure
from jaxvqa.scoring.results import ScoreFailure, SegmentScore, VideoScore
from jaxvqa.scoring.sampling import Sampling


def score_videos(
    paths: Sequence[str],
    trained: TrainedModel,
    *,
    sampling: Sampling | None = None,
    display_size: tuple[int, int] | None = None,
    allow_truncated: bool = False,
    per_device_batch: int = DEFAULT_PER_DEVICE_BATCH,
    workers: int = 4,
    on_failure: Callable[[ScoreFailure], None] | None = None,
    on_result: Callable[[VideoScore], None] | None = None,
    progress: bool = False,
) -> tuple[list[VideoScore], list[ScoreFailure]]:
  """Scores every file of `paths`; returns (scores, failures), each in the order of `paths`.

  Args:
    paths: video files.
    trained: the loaded run (`inference.load_model`).
    sampling: the frames of the whole-video score and the segments (default: one clip of the
      model's T frames, as evaluation scores it; no segments).
    display_size: (width, height) every file is decoded at before the model's preparation, as a
      ladder's rungs were for training (`decoding.decode_video`); None: each at its own size.
    allow_truncated: score a file that ended early from the frames it has (its score carries a
      `truncated` warning) instead of failing it.
    per_device_batch: clips per device per model call; the last batch is padded, so every call
      has the same shape (one compilation, and scores independent of the device count).
    workers: decode threads.
    on_failure: called at once for each file that cannot be decoded, or whose score is not a
      finite number (e.g. to print it).
    on_result: called with each score as soon as it is made (e.g. to write it out), so a run
      that dies later keeps what it scored.
    progress: a tqdm bar on stderr.
  """
  if sampling is None:
    sampling = Sampling(clip_length=trained.frames.num_frames, frames=trained.frames.num_frames)
  if workers < 1:
    raise ValueError(f"workers must be >= 1, got {workers}")
  display_size = check_display_size(display_size)
  results: dict[int, VideoScore] = {}
  failures: dict[int, ScoreFailure] = {}
  bar = tqdm(
      total=len(paths),
      desc="score",
      unit="video",
      disable=not progress,
      file=sys.stderr,
      dynamic_ncols=True,
  )

  def scored(position: int, score: VideoScore) -> None:
    results[position] = score
    if on_result is not None:
      on_result(score)
    bar.update(1)

  def failed(position: int, failure: ScoreFailure) -> None:
    failures[position] = failure
    if on_failure is not None:
      on_failure(failure)
    bar.update(1)

  batches = _Batches(trained, per_device_batch, on_scored=scored, on_failed=failed)
  # Decoded clips waiting for the model are bounded to about two batches, plus one video per worker.
  clips_per_video = sampling.num_clips + (sampling.fixed_segment_count or 1)
  lookahead = max(2, -(-2 * batches.batch_size // clips_per_video)) + workers
  outcomes = _decode_in_order(
      paths,
      functools.partial(
          decode_or_failure,
          options=trained.frames,
          sampling=sampling,
          display_size=display_size,
          allow_truncated=allow_truncated,
      ),
      workers=workers,
      lookahead=lookahead,
  )
  try:
    with contextlib.closing(outcomes):
      for position, outcome in outcomes:
        if isinstance(outcome, ScoreFailure):
          failed(position, outcome)
        else:
          batches.add(position, paths[position], outcome)
    batches.finish()
  finally:
    bar.close()
  return ([results[p] for p in sorted(results)], [failures[p] for p in sorted(failures)])


def _decode_in_order(
    paths: Sequence[str],
    decode_one: Callable[[str], DecodedVideo | ScoreFailure],
    *,
    workers: int,
    lookahead: int,
) -> Iterator[tuple[int, DecodedVideo | ScoreFailure]]:
  """(position, clips or failure) of each file in the order of `paths`, decoded by `workers`
  threads up to `lookahead` files ahead of the one handed out."""
  with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="jaxvqa-decode") as pool:
    pending: collections.deque = collections.deque()
    try:
      for position, path in enumerate(paths):
        pending.append((position, pool.submit(decode_one, path)))
        if len(pending) == lookahead:
          position, future = pending.popleft()
          yield position, future.result()
      while pending:
        position, future = pending.popleft()
        yield position, future.result()
    finally:
      for _, future in pending:
        future.cancel()


@dataclasses.dataclass
class _OpenVideo:
  """A decoded file some of whose clips are still waiting for, or on, the devices."""

  path: str
  decoded: DecodedVideo  # without its pixels: those are in the batches
  raw: np.ndarray  # float64 [K + M] clip scores, filled as batches come back
  clips_left: int


class _Batches:
  """Clips gathered into fixed-size batches, each dispatched at once, its scores fetched after the
  next one is queued; a file's `VideoScore` goes to `on_scored` when its last clip comes back, or
  a `ScoreFailure` to `on_failed` when a clip's score is not finite: NaN is not a score."""

  def __init__(
      self,
      trained: TrainedModel,
      per_device_batch: int,
      on_scored: Callable[[int, VideoScore], None],
      on_failed: Callable[[int, ScoreFailure], None],
  ):
    self.trained = trained
    self.per_device_batch = per_device_batch
    self.batch_size = trained.global_batch_size(per_device_batch)
    self.on_scored = on_scored
    self.on_failed = on_failed
    self._videos: dict[int, _OpenVideo] = {}
    self._clips: list[np.ndarray] = []
    self._owners: list[tuple[int, int]] = []  # (video position, clip number) of each waiting clip
    self._in_flight: collections.deque[tuple[Any, list[tuple[int, int]]]] = collections.deque()

  def add(self, position: int, path: str, decoded: DecodedVideo) -> None:
    """Queues the clips of one file; launches every batch they fill."""
    count = len(decoded.clips)
    self._videos[position] = _OpenVideo(
        path=path,
        decoded=dataclasses.replace(decoded, clips=np.empty(0, np.uint8)),
        raw=np.zeros(count, np.float64),
        clips_left=count,
    )
    self._clips.extend(decoded.clips)
    self._owners.extend((position, number) for number in range(count))
    while len(self._clips) >= self.batch_size:
      self._launch(self.batch_size)

  def finish(self) -> None:
    """Scores the clips left (one padded batch) and waits for every batch."""
    if self._clips:
      self._launch(len(self._clips))
    while self._in_flight:
      self._collect_oldest()

  def _launch(self, count: int) -> None:
    clips = np.stack(self._clips[:count])
    owners = self._owners[:count]
    del self._clips[:count], self._owners[:count]
    self._in_flight.append((self.trained.dispatch(clips, self.per_device_batch), owners))
    # The next batch is queued on the devices before this blocks on the previous one.
    if len(self._in_flight) > 1:
      self._collect_oldest()

  def _collect_oldest(self) -> None:
    device_scores, owners = self._in_flight.popleft()
    raw = np.asarray(device_scores, np.float64)[: len(owners)]
    for (position, clip_number), value in zip(owners, raw):
      video = self._videos[position]
      video.raw[clip_number] = value
      video.clips_left -= 1
      if video.clips_left == 0:
        del self._videos[position]
        nonfinite = int(np.count_nonzero(~np.isfinite(video.raw)))
        if nonfinite:
          self.on_failed(
              position,
              ScoreFailure(
                  video.path,
                  f"the model's score is not a number ({nonfinite} of {len(video.raw)} clips "
                  "scored NaN or infinity): the model is broken for this input",
              ),
          )
        else:
          self.on_scored(position, _video_score(video.path, video.decoded, video.raw, self.trained))


def _video_score(
    path: str, decoded: DecodedVideo, raw: np.ndarray, trained: TrainedModel
) -> VideoScore:
  """raw: float64 [K + M] clip scores (the whole video's K clips first, then M segments).

  The whole-video raw score is the mean of its K clips' (each a sample of the same quantity, the
  one the calibration was fitted to), calibrated once.
  """
  whole = float(np.mean(raw[: decoded.num_whole_clips]))
  segment_raw = raw[decoded.num_whole_clips :]
  calibrated = trained.calibrate(np.concatenate([[whole], segment_raw]))
  segments = tuple(
      SegmentScore(
          start_frame=start,
          end_frame=stop,
          start_seconds=start_seconds,
          end_seconds=end_seconds,
          score=float(calibrated[1 + s]),
          raw_score=float(segment_raw[s]),
          frame=frame,
      )
      for s, ((start, stop), (start_seconds, end_seconds), frame) in enumerate(
          zip(decoded.segments, decoded.segment_seconds, decoded.segment_frames)
      )
  )
  return VideoScore(
      path=path,
      score=float(calibrated[0]),
      raw_score=whole,
      num_frames=decoded.num_frames,
      fps=decoded.fps,
      segments=segments,
      frame_indices=decoded.frame_indices,
      decoded_size=decoded.decoded_size,
      warnings=decoded.warnings,
  )

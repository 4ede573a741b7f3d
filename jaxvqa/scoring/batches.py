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
import queue
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from jaxvqa.serve.inference import DEFAULT_PER_DEVICE_BATCH, TrainedModel
from jaxvqa.scoring.decoding import DecodedVideo, check_display_size, decode_or_failure
from jaxvqa.scoring.results import ScoreFailure, SegmentScore, VideoScore
from jaxvqa.scoring.sampling import Sampling
from jaxvqa.scoring import validity


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
  # Files decoded ahead of the one being scored: about two batches' worth, plus one per worker;
  # each holds at most a batch of clips waiting for the model (`_ClipStream`), however long it is.
  clips_per_video = sampling.num_clips + (sampling.fixed_segment_count or 1)
  lookahead = max(2, -(-2 * batches.batch_size // clips_per_video)) + workers
  streams = _decode_in_order(
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
      capacity=batches.batch_size,
  )
  try:
    with contextlib.closing(streams):
      for position, stream in streams:
        for event in stream:
          if isinstance(event, _Plan):
            batches.open(position, paths[position], event.clips)
          elif isinstance(event, _Clip):
            batches.add(position, event.number, event.clip)
          elif isinstance(event, ScoreFailure):
            batches.drop(position)
            failed(position, event)
          else:
            batches.close(position, event)
    batches.finish()
  finally:
    bar.close()
  return ([results[p] for p in sorted(results)], [failures[p] for p in sorted(failures)])


@dataclasses.dataclass(frozen=True)
class _Plan:
  """A file's clips are chosen (again: every clip of the file handed on before is void)."""

  clips: int  # K + M


@dataclasses.dataclass(frozen=True)
class _Clip:
  number: int  # k < K: the whole video's k-th clip; K + s: segment s
  clip: np.ndarray  # uint8 [T, S, S, 3]


class _Cancelled(BaseException):
  """The scoring thread stopped reading: the decode of a file ends (not an Exception, so it is not
  reported as the file's failure)."""


class _ClipStream:
  """One file's decode in a worker thread, read in order by the scoring thread: its `_Plan`s and
  `_Clip`s, then the DecodedVideo (without clips) or a ScoreFailure. The queue between them holds
  at most `capacity` clips, so a long file waits for the model instead of filling memory."""

  def __init__(self, capacity: int):
    self._queue: queue.Queue = queue.Queue(maxsize=max(1, capacity))
    self._cancelled = threading.Event()
    self.future: concurrent.futures.Future | None = None

  def put(self, event) -> None:
    while True:
      if self._cancelled.is_set():
        raise _Cancelled
      try:
        self._queue.put(event, timeout=0.1)
        return
      except queue.Full:
        continue

  def cancel(self) -> None:
    self._cancelled.set()

  def __iter__(self) -> Iterator[_Plan | _Clip | DecodedVideo | ScoreFailure]:
    while True:
      try:
        event = self._queue.get(timeout=0.5)
      except queue.Empty:
        if self.future is not None and self.future.done():
          self.future.result()  # the worker died of something other than a bad file: raise it
          raise RuntimeError("a decode worker ended without a result")
        continue
      yield event
      if isinstance(event, (DecodedVideo, ScoreFailure)):
        return

  def run(self, decode_one: Callable[..., DecodedVideo | ScoreFailure], path: str) -> None:
    """The worker's side: decodes `path`, handing each clip on as it is made."""
    try:
      outcome = decode_one(
          path,
          on_plan=lambda clips: self.put(_Plan(clips)),
          on_clip=lambda number, clip: self.put(_Clip(number, clip)),
      )
      self.put(outcome)
    except _Cancelled:
      pass


def _decode_in_order(
    paths: Sequence[str],
    decode_one: Callable[..., DecodedVideo | ScoreFailure],
    *,
    workers: int,
    lookahead: int,
    capacity: int,
) -> Iterator[tuple[int, _ClipStream]]:
  """(position, the file's `_ClipStream`) of each file in the order of `paths`, decoded by
  `workers` threads up to `lookahead` files ahead of the one handed out."""
  with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="jaxvqa-decode") as pool:
    pending: collections.deque[tuple[int, _ClipStream]] = collections.deque()

    def submit(position: int, path: str) -> None:
      stream = _ClipStream(capacity)
      stream.future = pool.submit(stream.run, decode_one, path)
      pending.append((position, stream))

    handed_out: list[_ClipStream] = []  # the stream being read: cancelled too if reading stops
    try:
      for position, path in enumerate(paths):
        submit(position, path)
        if len(pending) == lookahead:
          handed_out[:] = [pending[0][1]]
          yield pending.popleft()
      while pending:
        handed_out[:] = [pending[0][1]]
        yield pending.popleft()
    finally:
      # A worker blocked on a full queue would hold the pool's shutdown for good.
      for stream in [*handed_out, *(stream for _, stream in pending)]:
        stream.cancel()
        stream.future.cancel()


@dataclasses.dataclass
class _OpenVideo:
  """A file some of whose clips are still being decoded, waiting for, or on, the devices."""

  path: str
  generation: int  # how many times its clips were chosen: scores of an earlier choice are void
  raw: np.ndarray  # float64 [K + M] clip scores, filled as batches come back
  clips_left: int
  decoded: DecodedVideo | None = None  # without its pixels, once decoding ended


class _Batches:
  """Clips gathered into fixed-size batches, each dispatched at once, its scores fetched after the
  next one is queued; a file's `VideoScore` goes to `on_scored` when its decoding has ended and
  its last clip came back, or a `ScoreFailure` to `on_failed` when a clip's score is not finite:
  NaN is not a score."""

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
    # (video position, generation, clip number) of each waiting clip
    self._owners: list[tuple[int, int, int]] = []
    self._in_flight: collections.deque[tuple[Any, list[tuple[int, int, int]]]] = collections.deque()

  def open(self, position: int, path: str, clips: int) -> None:
    """A file's clips were chosen: `clips` will come. Chosen again, the earlier ones are void."""
    previous = self._videos.get(position)
    self.drop(position)
    self._videos[position] = _OpenVideo(
        path=path,
        generation=0 if previous is None else previous.generation + 1,
        raw=np.zeros(clips, np.float64),
        clips_left=clips,
    )

  def add(self, position: int, number: int, clip: np.ndarray) -> None:
    """Queues one clip of a file; launches the batch it fills."""
    self._clips.append(clip)
    self._owners.append((position, self._videos[position].generation, number))
    if len(self._clips) >= self.batch_size:
      self._launch(self.batch_size)

  def close(self, position: int, decoded: DecodedVideo) -> None:
    """The file's decoding ended: its score goes out once its last clip is back."""
    video = self._videos[position]
    video.decoded = decoded
    if video.clips_left == 0:
      self._finish_video(position)

  def drop(self, position: int) -> None:
    """Forgets a file (it failed, or is read anew): its waiting clips go, its scores in flight are
    ignored when they come back."""
    if self._videos.pop(position, None) is None:
      return
    keep = [i for i, owner in enumerate(self._owners) if owner[0] != position]
    self._clips = [self._clips[i] for i in keep]
    self._owners = [self._owners[i] for i in keep]

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
    for (position, generation, clip_number), value in zip(owners, raw):
      video = self._videos.get(position)
      if video is None or video.generation != generation:
        continue  # a clip of a file that failed or was read anew
      video.raw[clip_number] = value
      video.clips_left -= 1
      if video.clips_left == 0 and video.decoded is not None:
        self._finish_video(position)

  def _finish_video(self, position: int) -> None:
    video = self._videos.pop(position)
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
  calibrated, warnings = validity.withhold_unmeasured(
      calibrated, decoded.warnings, trained.worst_score
  )
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
      warnings=warnings,
  )

"""One file's clips for scoring: the whole video's K clips and its segments (`sampling.Sampling`).

With the default sampling the whole-video clip is exactly the one evaluation scores
(`video.sample_frame_indices` with train=False: each segment's centre frame; then resize + centre
crop, or fragments at cell centres), so a file scores what `eval.py` reports for the same file.
Segment times in seconds come from the stream's timestamps (variable frame rates included).

`stream_video` (what `jaxvqa score` runs) hands each clip on as soon as its frames are decoded and
prepared and then drops them, so a file's memory does not grow with its length or its segments;
`decode_video` keeps them all (the Python API's one clip, tests, benchmarks).

With a display size (`jaxvqa score --display-size WxH`) the chosen frames of a file of another
size are decoded again at that size as the training frames of a ladder were made
(`ffmpeg_reader.read_frames_at_size`: ffmpeg, bicubic in yuv420p, then rgb24) before the model's own
preparation; a file already of that size is read as without it. Which frames are chosen does not
change.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from jaxvqa.data import decode, ffmpeg, ffmpeg_reader, stream_length, video
from jaxvqa.scoring import validity
from jaxvqa.scoring.discovery import file_problem
from jaxvqa.scoring.names import os_reason
from jaxvqa.scoring.results import ScoreFailure, ScoreWarning
from jaxvqa.scoring.sampling import Sampling, SegmentError, centre_frame


@dataclasses.dataclass(frozen=True)
class DecodedVideo:
  # uint8 [K + M, T, S, S, 3]: the whole video's K clips, then M segments (`decode_video`; empty
  # from `stream_video`, which hands them on one at a time)
  clips: np.ndarray
  num_frames: int
  fps: float
  segments: tuple[tuple[int, int], ...]  # M (start, stop) frame ranges
  segment_seconds: tuple[tuple[float, float], ...] = ()  # M (start, end) times, stream timestamps
  frame_indices: tuple[int, ...] = ()  # N frames the whole-video clips sample, in order
  num_whole_clips: int = 1  # K
  decoded_size: tuple[int, int] | None = None  # (width, height) of the frames the model prepared
  warnings: tuple[ScoreWarning, ...] = ()  # `validity`, and `truncated` where allowed

  @property
  def segment_frames(self) -> tuple[int, ...]:
    """The centre frame of each segment."""
    return tuple(centre_frame(start, stop) for start, stop in self.segments)


ClipSink = Callable[[int, np.ndarray], None]  # (clip number, uint8 [T, S, S, 3])
PlanSink = Callable[[int], None]  # the number of clips K + M, each time the frames are chosen


def decode_video(
    path: decode.VideoSource,
    options: video.FrameOptions,
    *,
    sampling: Sampling | None = None,
    decode_threads: int = 1,
    display_size: tuple[int, int] | None = None,
    allow_truncated: bool = False,
) -> DecodedVideo:
  """The whole-video clips and the segment clips of one file (default sampling: one clip of
  `options.num_frames` frames, no segments), and the file's warnings (`validity`).

  With the default sampling the whole-video clip equals `video.load_clip(path, train=False, ...)`:
  the same frames, prepared the same way (both preparations work frame by frame). Each distinct
  frame is decoded and prepared once, even when clips share it. This holds every clip of the file;
  `stream_video` hands them on one at a time instead (what `jaxvqa score` runs).

  display_size: (width, height) (`check_display_size`): frames of another size are decoded at it
  by `ffmpeg_reader.read_frames_at_size` (see the module docstring); None: as the file is.
  allow_truncated: a file that holds fewer frames than its container declares, or whose stream
  stops decoding early, is scored from the frames before that point, with a `truncated` warning;
  otherwise it raises TruncatedVideoError.

  Raises decode.VideoDecodeError naming the file and the reason; SegmentError when the file cannot
  be cut as asked (by seconds, without timestamps).
  """
  clips: list[np.ndarray | None] = []

  def plan(count: int) -> None:
    clips[:] = [None] * count

  def keep(number: int, clip: np.ndarray) -> None:
    clips[number] = clip

  decoded = stream_video(
      path,
      options,
      on_plan=plan,
      on_clip=keep,
      sampling=sampling,
      decode_threads=decode_threads,
      display_size=display_size,
      allow_truncated=allow_truncated,
  )
  return dataclasses.replace(decoded, clips=np.stack(clips))


def stream_video(
    path: decode.VideoSource,
    options: video.FrameOptions,
    *,
    on_plan: PlanSink,
    on_clip: ClipSink,
    sampling: Sampling | None = None,
    decode_threads: int = 1,
    display_size: tuple[int, int] | None = None,
    allow_truncated: bool = False,
) -> DecodedVideo:
  """`decode_video` handing each clip to `on_clip(number, clip)` as soon as its frames are
  decoded and prepared, so that memory does not grow with the file's length: a segment's clip goes
  as decoding passes its last frame, and its frames are then dropped; only the whole-video clips'
  N frames are kept to the end (their full-size copies too, for `validity`).

  Clip k < K is the whole video's k-th clip, K + s the s-th segment's. `on_plan(K + M)` comes
  before the first clip, and again if the file is read anew (decord failed partway and the bundled
  ffmpeg reads it, or a truncated file is scored from the frames before its end): every clip
  handed on before it is void. Returns the DecodedVideo with no clips (`clips` empty).
  """
  if sampling is None:
    sampling = Sampling(clip_length=options.num_frames, frames=options.num_frames)
  if sampling.clip_length != options.num_frames:
    raise ValueError(
        f"sampling of {sampling.clip_length}-frame clips for a model of {options.num_frames}"
    )
  plan = _FramePlan(sampling, on_plan, on_clip)
  reader = decode.open_reader(path, num_threads=decode_threads)
  # One seek-ordered pass over the open reader for every clip: decord decodes from the key frame
  # before each index, so a `load_clip` per clip would reopen the file and decode shared stretches
  # again. Frames are prepared as they are decoded, a chunk at a time, and each clip handed on
  # once its last frame is prepared (peak memory in docs/SCORING.md).
  declared = stream_length.declared_length(path, float(reader.get_avg_fps()))
  prepared_size: list[tuple[int, int]] = []  # (width, height) of the frames the model prepared

  def prepare_chunk(indices: np.ndarray, frames: np.ndarray) -> None:
    plan.keep_full_size(indices, frames)
    # decord tells a file's size only by decoding it, so a file of another size is decoded again;
    # one at the display size keeps exactly these frames.
    if display_size is not None and (frames.shape[2], frames.shape[1]) != tuple(display_size):
      frames = ffmpeg_reader.read_frames_at_size(
          path, indices, display_size, num_threads=decode_threads
      )
    prepared_size[:] = [(int(frames.shape[2]), int(frames.shape[1]))]
    plan.add_prepared(indices, np.ascontiguousarray(options.prepare(frames)))

  try:
    reader, _ = decode.stream_chosen_frames(
        path,
        reader,
        plan.choose,
        prepare_chunk,
        num_threads=decode_threads,
        allow_truncated=allow_truncated,
    )
  except decode.TruncatedVideoError as error:
    # Its total is the stream's packets; the container may declare more (a faststart MP4 cut).
    total = max(error.frames_declared, declared.frames or 0)
    raise decode.TruncatedVideoError(
        decode.describe_source(path), error.frames_read, total
    ) from error
  num_frames, fps = len(reader), float(reader.get_avg_fps())
  truncation = _truncation(path, num_frames, fps, declared, plan.declared_frames, allow_truncated)
  whole_video_frames = plan.full_size_frames()
  warnings = validity.check_frames(whole_video_frames, num_frames, options.size)
  return DecodedVideo(
      clips=np.zeros((0,), np.uint8),
      num_frames=num_frames,
      fps=fps,
      segments=tuple(plan.segments),
      segment_seconds=tuple(
          (float(plan.starts[a]), float(plan.starts[b])) for a, b in plan.segments
      ),
      frame_indices=tuple(int(i) for i in sampling.whole_video_indices(num_frames)),
      num_whole_clips=sampling.num_clips,
      decoded_size=prepared_size[0],
      warnings=truncation + warnings,
  )


class _FramePlan:
  """Which frames the clips of a file take, chosen from whichever reader ends up reading it
  (`decode.stream_chosen_frames` may swap decord's for ffmpeg's, of another length), and the
  prepared frames of the clips not yet handed on."""

  def __init__(self, sampling: Sampling, on_plan: PlanSink, on_clip: ClipSink):
    self.sampling = sampling
    self.on_plan = on_plan
    self.on_clip = on_clip
    self.segments: list[tuple[int, int]] = []
    self.starts: np.ndarray | None = None
    self.declared_frames: int | None = None
    self._unique = np.zeros(0, np.int64)
    self._whole_video = np.zeros(0, np.int64)
    self._full_size: dict[int, np.ndarray] = {}
    self._prepared: dict[int, np.ndarray] = {}  # position in `_unique` → prepared frame
    self._clip_positions = np.zeros((0, sampling.clip_length), np.int64)  # [K + M, T]
    self._uses = np.zeros(0, np.int64)  # [U]: clips not yet handed on that read each frame
    self._clip_order = np.zeros(0, np.int64)  # clips by their last frame
    self._clips_sent = 0
    self._frames_done = 0  # positions in `_unique` prepared so far

  def choose(self, reader) -> np.ndarray:
    """int64 [U]: the distinct frames every clip reads, sorted."""
    num_frames = len(reader)
    # The first reader's length is what the file declared when its stream was counted whole.
    if self.declared_frames is None:
      self.declared_frames = num_frames
    sampling = self.sampling
    self.starts = decode.frame_start_seconds(reader) if sampling.segmented_by else None
    self.segments = sampling.segment_ranges(num_frames, self.starts)
    index_sets = [
        *sampling.whole_video_clips(num_frames),
        *(sampling.segment_clip(start, stop) for start, stop in self.segments),
    ]
    self._unique, inverse = np.unique(np.concatenate(index_sets), return_inverse=True)
    # A reader chosen again (ffmpeg's after decord's) numbers its frames anew.
    self._clip_positions = inverse.reshape(-1, sampling.clip_length)
    self._uses = np.bincount(inverse.reshape(-1), minlength=len(self._unique))
    self._clip_order = np.argsort(self._clip_positions.max(axis=1), kind="stable")
    self._clips_sent = self._frames_done = 0
    self._prepared = {}
    self._whole_video = np.unique(sampling.whole_video_indices(num_frames))
    self._full_size = {}
    self.on_plan(len(self._clip_positions))
    return self._unique

  def keep_full_size(self, indices: np.ndarray, frames: np.ndarray) -> None:
    """Keeps the decoded whole-video frames among `indices` for `validity` (N at most)."""
    for position in np.flatnonzero(np.isin(indices, self._whole_video)):
      self._full_size[int(indices[position])] = frames[position].copy()  # not a view: frees chunk

  def add_prepared(self, indices: np.ndarray, prepared: np.ndarray) -> None:
    """Takes the prepared frames of the next chunk (in file order) and hands on every clip whose
    frames are now all prepared, dropping the frames no clip left needs."""
    positions = np.searchsorted(self._unique, indices)
    for position, frame in zip(positions.tolist(), prepared):
      self._prepared[position] = frame.copy()  # not a view: frees the chunk
    self._frames_done = int(positions[-1]) + 1
    while self._clips_sent < len(self._clip_order):
      number = int(self._clip_order[self._clips_sent])
      clip_positions = self._clip_positions[number]
      if clip_positions.max() >= self._frames_done:
        break
      self.on_clip(number, np.stack([self._prepared[p] for p in clip_positions.tolist()]))
      self._clips_sent += 1
      for position in clip_positions.tolist():
        self._uses[position] -= 1
        if self._uses[position] == 0:
          del self._prepared[position]

  def full_size_frames(self) -> np.ndarray:
    """uint8 [U, H, W, 3]: the distinct frames of the whole-video score as decoded, in order."""
    return np.stack([self._full_size[int(index)] for index in self._whole_video])


def _truncation(
    path: decode.VideoSource,
    frames_read: int,
    fps: float,
    declared: stream_length.Declared,
    stream_frames: int,
    allow_truncated: bool,
) -> tuple[ScoreWarning, ...]:
  """A `truncated` warning when the file holds fewer frames than its container declares (or than
  its stream had packets, where decoding stopped early) and `allow_truncated`; raises
  TruncatedVideoError when not allowed; () for a complete file."""
  if stream_length.missing_frames(declared, frames_read, fps):
    total = declared.frames
  elif frames_read < stream_frames:  # ffmpeg stopped before the end of the packets
    total = max(stream_frames, declared.frames or 0)
  else:
    return ()
  if not allow_truncated:
    raise decode.TruncatedVideoError(decode.describe_source(path), frames_read, total)
  return (
      ScoreWarning(
          "truncated",
          f"the file ended early: scored from the {frames_read} frames read of the {total} "
          "its container declares",
      ),
  )


MAX_DISPLAY_SIDE = 16384  # ffmpeg's scaler refuses larger frames, so every file would fail


def check_display_size(size: Any) -> tuple[int, int] | None:
  """`size` as the display size (width, height) that scoring decodes every file at; None stays
  None (files as they are).

  Raises ValueError naming display_size unless `size` is two positive integers, and RuntimeError
  naming display_size (`jaxvqa score --display-size`) and ffmpeg when the bundled ffmpeg, which
  decodes at a display size, is not there.
  """
  if size is None:
    return None
  try:
    width, height = size
  except (TypeError, ValueError):
    width = height = None
  if not all(
      isinstance(side, (int, np.integer))
      and not isinstance(side, bool)
      and 0 < side <= MAX_DISPLAY_SIDE
      for side in (width, height)
  ):
    raise ValueError(
        f"display_size must be (width, height) in pixels, two integers from 1 to "
        f"{MAX_DISPLAY_SIDE} such as (320, 180) for a ladder whose top rung is 320×180; "
        f"got {size!r}"
    )
  try:
    ffmpeg.ffmpeg_exe()
  except (ImportError, RuntimeError, OSError) as error:
    raise RuntimeError(
        "--display-size (display_size in the Python API) decodes with ffmpeg, the one "
        f"imageio-ffmpeg ships, which cannot be found here ({error}): pip install "
        "imageio-ffmpeg, or score without a display size"
    ) from error
  return int(width), int(height)


def _failure_reason(path: str, error: Exception) -> str:
  """The reason without the file name that VideoDecodeError messages start with."""
  message = str(error)
  prefix = f"{path}: "
  if isinstance(error, decode.VideoDecodeError):
    return message[len(prefix) :] if message.startswith(prefix) else message
  if isinstance(error, SegmentError):
    return message
  return f"{type(error).__name__}: {message}"


@contextlib.contextmanager
def _decodable_name(path: str) -> Iterator[str]:
  """`path`, or, for a name that is not UTF-8, a /dev/fd name of the file opened here.

  decord passes file names to FFmpeg as UTF-8 and raises UnicodeEncodeError on any other; the
  file opened by its bytes name and reached through /dev/fd is read from disk all the same.
  """
  try:
    path.encode("utf-8")
  except UnicodeEncodeError:
    descriptor = os.open(path, os.O_RDONLY)
    try:
      yield f"/dev/fd/{descriptor}"
    finally:
      os.close(descriptor)
  else:
    yield path


def decode_or_failure(
    path: str,
    options: video.FrameOptions,
    sampling: Sampling,
    display_size: tuple[int, int] | None = None,
    allow_truncated: bool = False,
    *,
    on_plan: PlanSink,
    on_clip: ClipSink,
) -> DecodedVideo | ScoreFailure:
  """`stream_video` of one file (its clips to `on_clip`), or the ScoreFailure saying why the file
  cannot be scored; any clip handed on before a failure is void."""
  problem = file_problem(path)
  if problem is not None:
    return ScoreFailure(path, problem)
  try:
    with _decodable_name(path) as name:
      try:
        return stream_video(
            name,
            options,
            on_plan=on_plan,
            on_clip=on_clip,
            sampling=sampling,
            decode_threads=1,
            display_size=display_size,
            allow_truncated=allow_truncated,
        )
      except Exception as error:  # noqa: BLE001 — any bad file is reported, never fatal to the run
        return ScoreFailure(path, _failure_reason(name, error))
  except OSError as error:
    return ScoreFailure(path, os_reason(error))

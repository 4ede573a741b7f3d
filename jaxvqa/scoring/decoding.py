"""One file's clips for scoring: the whole video's K clips and its segments (`sampling.Sampling`).

With the default sampling the whole-video clip is exactly the one evaluation scores
(`video.sample_frame_indices` with train=False: each segment's centre frame; then resize + centre
crop, or fragments at cell centres), so a file scores what `eval.py` reports for the same file.
Segment times in seconds come from the stream's timestamps (variable frame rates included).

With a display size (`jaxvqa score --display-size WxH`) the chosen frames of a file of another
size are decoded again at that size as the training frames of a ladder were made
(`decode.read_frames_at_size`: ffmpeg, bicubic in yuv420p, then rgb24) before the model's own
preparation; a file already of that size is read as without it. Which frames are chosen does not
change.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from jaxvqa.data import decode, ffmpeg, video
from jaxvqa.scoring.discovery import file_problem
from jaxvqa.scoring.names import os_reason
from jaxvqa.scoring.results import ScoreFailure
from jaxvqa.scoring.sampling import Sampling, SegmentError, centre_frame


@dataclasses.dataclass(frozen=True)
class DecodedVideo:
  clips: np.ndarray  # uint8 [K + M, T, S, S, 3]: the whole video's K clips, then M segments
  num_frames: int
  fps: float
  segments: tuple[tuple[int, int], ...]  # M (start, stop) frame ranges
  segment_seconds: tuple[tuple[float, float], ...] = ()  # M (start, end) times, stream timestamps
  frame_indices: tuple[int, ...] = ()  # N frames the whole-video clips sample, in order
  num_whole_clips: int = 1  # K
  decoded_size: tuple[int, int] | None = None  # (width, height) of the frames the model prepared

  @property
  def segment_frames(self) -> tuple[int, ...]:
    """The centre frame of each segment."""
    return tuple(centre_frame(start, stop) for start, stop in self.segments)


def decode_video(
    path: decode.VideoSource,
    options: video.FrameOptions,
    *,
    sampling: Sampling | None = None,
    decode_threads: int = 1,
    display_size: tuple[int, int] | None = None,
) -> DecodedVideo:
  """The whole-video clips and the segment clips of one file (default sampling: one clip of
  `options.num_frames` frames, no segments).

  With the default sampling the whole-video clip equals `video.load_clip(path, train=False, ...)`:
  the same frames, prepared the same way (both preparations work frame by frame). Each distinct
  frame is decoded and prepared once, even when clips share it.

  display_size: (width, height) (`check_display_size`): frames of another size are decoded at it
  by `decode.read_frames_at_size` (see the module docstring); None: as the file is.

  Raises decode.VideoDecodeError naming the file and the reason; SegmentError when the file cannot
  be cut as asked (by seconds, without timestamps).
  """
  if sampling is None:
    sampling = Sampling(clip_length=options.num_frames, frames=options.num_frames)
  if sampling.clip_length != options.num_frames:
    raise ValueError(
        f"sampling of {sampling.clip_length}-frame clips for a model of {options.num_frames}"
    )
  reader = decode.open_reader(path, num_threads=decode_threads)
  num_frames = len(reader)
  fps = float(reader.get_avg_fps())
  starts = decode.frame_start_seconds(reader) if sampling.segmented_by else None
  segments = sampling.segment_ranges(num_frames, starts)
  whole = sampling.whole_video_clips(num_frames)
  index_sets = [*whole, *(sampling.segment_clip(start, stop) for start, stop in segments)]
  unique, inverse = np.unique(np.concatenate(index_sets), return_inverse=True)
  # One seek-ordered pass over the open reader for every clip: decord decodes from the key frame
  # before each index, so a `load_clip` per clip would reopen the file and decode shared stretches
  # again.
  frames = decode.read_from_reader(reader, unique, decode.describe_source(path))
  # decord tells a file's size only by decoding it, so a file of another size is decoded again;
  # one at the display size keeps exactly these frames.
  if display_size is not None and (frames.shape[2], frames.shape[1]) != tuple(display_size):
    frames = decode.read_frames_at_size(path, unique, display_size, num_threads=decode_threads)
  prepared = np.ascontiguousarray(options.prepare(frames))
  clips = prepared[inverse.reshape(len(index_sets), sampling.clip_length)]
  seconds = tuple((float(starts[start]), float(starts[stop])) for start, stop in segments)
  return DecodedVideo(
      clips=clips,
      num_frames=num_frames,
      fps=fps,
      segments=tuple(segments),
      segment_seconds=seconds,
      frame_indices=tuple(int(i) for i in sampling.whole_video_indices(num_frames)),
      num_whole_clips=sampling.num_clips,
      decoded_size=(int(frames.shape[2]), int(frames.shape[1])),
  )


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
      isinstance(side, (int, np.integer)) and not isinstance(side, bool) and side > 0
      for side in (width, height)
  ):
    raise ValueError(
        f"display_size must be (width, height) in pixels, two positive integers such as "
        f"(320, 180) for a ladder whose top rung is 320×180; got {size!r}"
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
) -> DecodedVideo | ScoreFailure:
  problem = file_problem(path)
  if problem is not None:
    return ScoreFailure(path, problem)
  try:
    with _decodable_name(path) as name:
      try:
        return decode_video(
            name, options, sampling=sampling, decode_threads=1, display_size=display_size
        )
      except Exception as error:  # noqa: BLE001 — any bad file is reported, never fatal to the run
        return ScoreFailure(path, _failure_reason(name, error))
  except OSError as error:
    return ScoreFailure(path, os_reason(error))

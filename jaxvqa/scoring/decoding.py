"""One file's clips for scoring: the whole video and N temporal segments, sampled as evaluation does.

A clip is sampled exactly as evaluation samples it (`video.sample_frame_indices` with
train=False: each segment's centre frame; then resize + centre crop, or fragments at cell
centres), so a file scores what `eval.py` reports for the same file. Segment s of N covers the
frames [⌊s·F/N⌋, ⌊(s+1)·F/N⌋) of an F-frame video and is sampled the same way inside that range;
its times in seconds come from the stream's timestamps (variable frame rates included).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator

import numpy as np

from jaxvqa.data import video
from jaxvqa.scoring.discovery import file_problem
from jaxvqa.scoring.names import os_reason
from jaxvqa.scoring.results import ScoreFailure


@dataclasses.dataclass(frozen=True)
class DecodedVideo:
  clips: np.ndarray  # uint8 [1 + N, T, S, S, 3]: whole video, then N segments
  num_frames: int
  fps: float
  segments: tuple[tuple[int, int], ...]  # N (start, stop) frame ranges
  segment_seconds: tuple[tuple[float, float], ...] = ()  # N (start, end) times, stream timestamps


def segment_bounds(num_frames: int, num_segments: int) -> list[tuple[int, int]]:
  """N contiguous frame ranges [⌊s·F/N⌋, ⌊(s+1)·F/N⌋); a video shorter than N keeps one frame each."""
  bounds = [(s * num_frames) // num_segments for s in range(num_segments + 1)]
  return [(start, max(stop, start + 1)) for start, stop in zip(bounds[:-1], bounds[1:])]


def decode_video(
    path: video.VideoSource,
    options: video.FrameOptions,
    *,
    num_segments: int = 0,
    decode_threads: int = 1,
) -> DecodedVideo:
  """The whole-video clip and `num_segments` segment clips of one file.

  The whole-video clip equals `video.load_clip(path, train=False, ...)`: the same frames,
  prepared the same way (both preparations work frame by frame). Each distinct frame is
  decoded and prepared once, even when the whole clip and a segment share it.

  Raises video.VideoDecodeError naming the file and the reason.
  """
  reader = video.open_reader(path, num_threads=decode_threads)
  num_frames = len(reader)
  fps = float(reader.get_avg_fps())
  clip_length = options.num_frames
  segments = segment_bounds(num_frames, num_segments) if num_segments else []
  index_sets = [video.sample_frame_indices(num_frames, clip_length, train=False, rng=None)]
  index_sets += [
      start + video.sample_frame_indices(stop - start, clip_length, train=False, rng=None)
      for start, stop in segments
  ]
  unique, inverse = np.unique(np.concatenate(index_sets), return_inverse=True)
  # One seek-ordered pass over the open reader for every clip: decord decodes from the key frame
  # before each index, so a `load_clip` per clip would reopen the file and decode shared stretches
  # again.
  frames = video.read_from_reader(reader, unique, video.describe_source(path))
  prepared = np.ascontiguousarray(
      video.prepare_frames(
          frames, options.size, mode=options.mode, fragment_grid=options.fragment_grid
      )
  )
  clips = prepared[inverse.reshape(len(index_sets), clip_length)]
  seconds = ()
  if segments:
    starts = video.frame_start_seconds(reader)
    seconds = tuple((float(starts[start]), float(starts[stop])) for start, stop in segments)
  return DecodedVideo(
      clips=clips, num_frames=num_frames, fps=fps, segments=tuple(segments), segment_seconds=seconds
  )


def _failure_reason(path: str, error: Exception) -> str:
  """The reason without the file name that VideoDecodeError messages start with."""
  message = str(error)
  prefix = f"{path}: "
  if isinstance(error, video.VideoDecodeError):
    return message[len(prefix) :] if message.startswith(prefix) else message
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
    path: str, options: video.FrameOptions, num_segments: int
) -> DecodedVideo | ScoreFailure:
  problem = file_problem(path)
  if problem is not None:
    return ScoreFailure(path, problem)
  try:
    with _decodable_name(path) as name:
      try:
        return decode_video(name, options, num_segments=num_segments, decode_threads=1)
      except Exception as error:  # noqa: BLE001 — any bad file is reported, never fatal to the run
        return ScoreFailure(path, _failure_reason(name, error))
  except OSError as error:
    return ScoreFailure(path, os_reason(error))

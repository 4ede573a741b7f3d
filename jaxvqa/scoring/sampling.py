"""Which frames each score of a file reads: the whole-video score's frames and the segments.

The model scores a clip of T frames. The whole-video score samples N frames (`--frames N`, a
multiple of T; N = T by default): the centres of N equal parts of the video, dealt into K = N / T
clips by taking every K-th one, so clip k is frames k, k + K, k + 2K, ... of the N. Each clip then
holds one frame from each of T equal parts of the video, as a training clip does (spread over the
whole video, at the model's own spacing), at its own offset; the score is the calibration of the
mean of the K raw scores. With N = T this is the one clip evaluation scores.

Segments (at most one way per run) are ranges of frames, each scored from a clip of T frames
sampled inside it as evaluation samples a video:

- `segments=N`: N equal parts [⌊s·F/N⌋, ⌊(s+1)·F/N⌋) of an F-frame video;
- `segment_seconds=S`: the frames whose timestamps fall in [i·S, (i+1)·S), from the stream's own
  timestamps (the last one shorter; a window holding no frame, a gap of a variable-rate stream,
  has no segment);
- `frame_scores=True`: one part per frame the whole-video score samples (the N equal parts whose
  centres those frames are), so each sampled frame gets the score of the stretch it stands for.

Every segment names its centre frame (`sample_frame_indices` of one frame: the later of two middle
frames), the frame that stands for it in a per-frame list such as VMAF's.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxvqa.data import video


class SegmentError(ValueError):
  """A file cannot be cut as asked (by seconds, without timestamps); the message says why."""


@dataclasses.dataclass(frozen=True)
class Sampling:
  """What a run's scores read; every row names it (`frames`, `segmented_by`)."""

  clip_length: int  # T, frames per clip (the model's)
  frames: int  # N, frames the whole-video score samples: N / T clips
  segments: int = 0  # N equal parts
  segment_seconds: float | None = None  # parts of S seconds
  frame_scores: bool = False  # one part per frame of the N

  def __post_init__(self):
    problem = self._problem()
    if problem is not None:
      raise ValueError(problem)

  def _problem(self) -> str | None:
    if self.clip_length < 1:
      return f"clip_length must be >= 1, got {self.clip_length}"
    if self.frames < 1:
      return f"--frames must be a positive number of frames, got {self.frames}"
    if self.frames % self.clip_length:
      multiples = ", ".join(
          f"{k * self.clip_length} = {k} clip{'s' if k > 1 else ''}" for k in (1, 2, 4)
      )
      return (
          f"--frames {self.frames}: the model scores clips of {self.clip_length} frames, so the "
          f"whole-video score samples a multiple of {self.clip_length} frames ({multiples})"
      )
    if self.segments < 0:
      return f"--segments must be >= 0, got {self.segments}"
    if self.segment_seconds is not None and not (0 < self.segment_seconds < float("inf")):
      return f"--segment-seconds must be a positive number of seconds, got {self.segment_seconds}"
    chosen = sum([self.segments > 0, self.segment_seconds is not None, self.frame_scores])
    if chosen > 1:
      return "--segments, --segment-seconds and --frame-scores are exclusive: choose one"
    return None

  @property
  def num_clips(self) -> int:
    """K: clips of the whole-video score."""
    return self.frames // self.clip_length

  @property
  def segmented_by(self) -> str | None:
    """How the segments were cut, as rows say it: "segments N", "seconds S", "frames N" or None."""
    if self.segments:
      return f"segments {self.segments}"
    if self.segment_seconds is not None:
      return f"seconds {self.segment_seconds:g}"
    if self.frame_scores:
      return f"frames {self.frames}"
    return None

  @property
  def fixed_segment_count(self) -> int | None:
    """Segments per video when every video has as many (None: by seconds, it varies; 0: none)."""
    if self.segment_seconds is not None:
      return None
    return self.frames if self.frame_scores else self.segments

  def whole_video_indices(self, num_frames: int) -> np.ndarray:
    """int64 [N]: the frames the whole-video score samples, in order."""
    return video.sample_frame_indices(num_frames, self.frames, train=False, rng=None)

  def whole_video_clips(self, num_frames: int) -> np.ndarray:
    """int64 [K, T]: clip k takes every K-th of the N frames, starting at the k-th."""
    indices = self.whole_video_indices(num_frames)
    return indices.reshape(self.clip_length, self.num_clips).T

  def segment_ranges(self, num_frames: int, starts: np.ndarray | None) -> list[tuple[int, int]]:
    """The (start, stop) frame ranges of the segments; `starts` (float64 [F + 1], seconds of each
    frame and the end of the last) is needed only to cut by seconds.

    Raises SegmentError: cutting by seconds a stream without usable timestamps.
    """
    if self.segment_seconds is not None:
      return seconds_bounds(starts, self.segment_seconds)
    count = self.fixed_segment_count
    return segment_bounds(num_frames, count) if count else []

  def segment_clip(self, start: int, stop: int) -> np.ndarray:
    """int64 [T]: a segment's clip, sampled inside it as evaluation samples a video."""
    return start + video.sample_frame_indices(stop - start, self.clip_length, train=False, rng=None)


def segment_bounds(num_frames: int, num_segments: int) -> list[tuple[int, int]]:
  """N contiguous frame ranges [⌊s·F/N⌋, ⌊(s+1)·F/N⌋); a video shorter than N keeps one frame each."""
  bounds = [(s * num_frames) // num_segments for s in range(num_segments + 1)]
  return [(start, max(stop, start + 1)) for start, stop in zip(bounds[:-1], bounds[1:])]


def seconds_bounds(starts: np.ndarray | None, seconds: float) -> list[tuple[int, int]]:
  """Frame ranges of `seconds`-long windows: frame k is in window ⌊starts[k] / seconds⌋.

  starts: float64 [F + 1] from `decode.frame_start_seconds` (rounded to the microsecond; the window
  edges are rounded the same way, so a frame starting exactly on an edge opens its window).
  Empty windows are left out. Raises SegmentError when the stream has no usable timestamps.
  """
  if starts is None or not np.all(np.isfinite(starts)):
    raise SegmentError(
        "the stream has no usable timestamps (and no frame rate), so it cannot be cut into "
        f"{seconds:g}-second segments; use --segments N instead"
    )
  frame_starts = starts[:-1]
  num_edges = int(np.ceil(frame_starts[-1] / seconds)) + 1
  edges = np.round(np.arange(1, num_edges + 1) * seconds, 6)
  cuts = np.searchsorted(frame_starts, edges, side="left")
  bounds = np.unique(np.concatenate([[0], cuts, [len(frame_starts)]]))
  return [(int(start), int(stop)) for start, stop in zip(bounds[:-1], bounds[1:])]


def centre_frame(start: int, stop: int) -> int:
  """The frame that stands for a segment: its centre (the later of two middle frames)."""
  return int(start + video.sample_frame_indices(stop - start, 1, train=False, rng=None)[0])

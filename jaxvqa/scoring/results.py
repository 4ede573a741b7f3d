"""What scoring produces: a score per file (and per segment), or the reason it has none."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ScoreWarning:
  """Why a score may mean nothing (`validity`): a name for machines, a detail for people."""

  name: str  # small_frames, flat_frames, noise_frames, single_frame, truncated
  detail: str


@dataclasses.dataclass(frozen=True)
class SegmentScore:
  start_frame: int  # first frame of the segment
  end_frame: int  # one past its last frame
  start_seconds: float  # from the stream's timestamps, 0 = the first frame
  end_seconds: float  # when its last frame ends
  score: float  # calibrated (label scale)
  raw_score: float  # model output
  frame: int  # the frame that stands for it (its centre; VMAF JSON's frameNum)


@dataclasses.dataclass(frozen=True)
class VideoScore:
  path: str  # as given or found (not resolved), so it matches what the user typed
  score: float  # calibrated (label scale); the raw score when the checkpoint has no calibration
  raw_score: float  # model output (the mean over the clips of the whole-video score)
  num_frames: int
  fps: float
  segments: tuple[SegmentScore, ...] = ()
  frame_indices: tuple[int, ...] = ()  # the frames the whole-video score sampled
  # (width, height) of the decoded frames the model prepared: the file's own size, or the display
  # size. Not written to the rows (None for a row read back): `jaxvqa score` counts upscaled files.
  decoded_size: tuple[int, int] | None = None
  warnings: tuple[ScoreWarning, ...] = ()  # the file is not what the model judges (`validity`)


@dataclasses.dataclass(frozen=True)
class ScoreFailure:
  path: str
  reason: str

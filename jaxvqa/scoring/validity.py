"""Is this a video the model was made to judge? Warnings for inputs whose score means nothing.

The model learned VMAF of encodes of natural video. A 1×1-pixel video, a flat black, white or grey
frame and pure random noise are none of that, and it scores them as high as a clean encode (88
and above); a file of one frame has no motion to judge. Every scored file is checked once, on the
frames its whole-video score decoded (as decoded, before the model's resize and crop), and a file
that fails carries a named warning on its row.

A flat or noise-like file is not measured: the model's number for it is an extrapolation (88 for
black, 92.6 for noise, above every real clip), so its score, and each of its segments', is the
worst on the model's scale (0 for VMAF; `TrainedModel.worst_score`) and its warning says so; the
model's own output stays in `raw_score`. Such a file ranks below every real clip, which is what
a catalogue check wants of a black or noise-filled encode. A small, one-frame or truncated file
is still real video: its score is kept beside the warning. A model without a calibration has no
worst end, so there the score is kept too.

    small_frames   the short side is below the model's input (it is upscaled to be judged)
    flat_frames    no spatial detail: the mean spatial information (SI, ITU-T P.910: the standard
                   deviation of the Sobel gradient of luma) of the frames is below FLAT_SI
    noise_frames   detail without structure: neighbouring pixels of luma are uncorrelated (their
                   correlation, mean over frames, below NOISE_CORRELATION), as in random noise,
                   where natural frames, however detailed or compressed, stay well above it
    single_frame   the file has one frame
    truncated      the file ended before the frames its container declares (scored only with
                   --allow-truncated; set by decoding, not here)

The thresholds and the measurements behind them are in docs/MODEL.md.
"""

from __future__ import annotations

import numpy as np

from jaxvqa.scoring.results import ScoreWarning

UNMEASURED = frozenset({"flat_frames", "noise_frames"})  # warnings that replace the score
FLAT_SI = 2.0  # real clips measure ≥ 28 (docs/MODEL.md); flat black, white and grey frames 0
NOISE_CORRELATION = 0.3  # real clips ≥ 0.56 (a brick wall texture); random noise ≈ 0.00
_MAX_ROWS = 256  # rows of each frame the statistics read (evenly spaced): cost bounded at any size


def check_frames(frames: np.ndarray, num_frames: int, input_size: int) -> tuple[ScoreWarning, ...]:
  """The warnings of a file (none when it is fine).

  frames: uint8 [N, H, W, 3] RGB, the frames the whole-video score decoded, at the file's size.
  num_frames: frames in the file. input_size: the model's input side (`FrameOptions.size`).
  """
  warnings = []
  height, width = frames.shape[1:3]
  if min(height, width) < input_size:
    warnings.append(
        ScoreWarning(
            "small_frames",
            f"frames of {width}x{height} are smaller than the model's {input_size} px input",
        )
    )
  luma = _luma_rows(frames)
  si = spatial_information(luma)
  if si < FLAT_SI:
    warnings.append(
        ScoreWarning("flat_frames", f"flat frames: spatial information {si:.2f} < {FLAT_SI}")
    )
  else:
    correlation = neighbour_correlation(luma)
    if correlation < NOISE_CORRELATION:
      warnings.append(
          ScoreWarning(
              "noise_frames",
              f"noise-like frames: neighbouring pixels correlate {correlation:.2f} "
              f"< {NOISE_CORRELATION}",
          )
      )
  if num_frames == 1:
    warnings.append(ScoreWarning("single_frame", "the file has one frame: no motion to judge"))
  return tuple(warnings)


def _luma_rows(frames: np.ndarray) -> np.ndarray:
  """float32 [N, G, 3, W]: BT.601 luma of groups of 3 consecutive rows of each frame (every row
  but the last two starts one; taller frames keep _MAX_ROWS / 3 evenly spaced groups), the rows a
  3×3 filter needs for one output row. Empty (G = 0) for frames under 3 rows."""
  height = frames.shape[1]
  starts = np.arange(max(height - 2, 0))
  if len(starts) > _MAX_ROWS // 3:
    starts = np.linspace(0, height - 3, _MAX_ROWS // 3).astype(np.int64)
  rows = (starts[:, None] + np.arange(3)).reshape(-1)
  picked = frames[:, rows].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
  return picked.reshape(len(frames), len(starts), 3, frames.shape[2])


def spatial_information(luma: np.ndarray) -> float:
  """Mean over frames of the standard deviation of the Sobel gradient magnitude (P.910's SI,
  averaged rather than its maximum, so one detailed frame does not hide flat ones).

  luma: float32 [N, G, 3, W] (`_luma_rows`); 0 for frames too small to filter.
  """
  if luma.shape[1] == 0 or luma.shape[3] < 3:
    return 0.0
  top, middle, bottom = luma[:, :, 0], luma[:, :, 1], luma[:, :, 2]
  smoothed = top + 2 * middle + bottom  # vertical smoothing of the horizontal gradient
  horizontal = smoothed[..., 2:] - smoothed[..., :-2]
  difference = bottom - top
  vertical = difference[..., :-2] + 2 * difference[..., 1:-1] + difference[..., 2:]
  magnitude = np.hypot(horizontal, vertical).reshape(len(luma), -1)
  return float(np.mean(magnitude.std(axis=1)))


def neighbour_correlation(luma: np.ndarray) -> float:
  """Mean over frames of the correlation of each pixel with its right-hand neighbour: near 1 for
  natural images (and their blocky or blurred encodes), near 0 for independent noise."""
  if luma.shape[1] == 0 or luma.shape[3] < 2:
    return 1.0
  left = luma[..., :-1].reshape(len(luma), -1)
  right = luma[..., 1:].reshape(len(luma), -1)
  left = left - left.mean(axis=1, keepdims=True)
  right = right - right.mean(axis=1, keepdims=True)
  denominator = np.sqrt((left**2).sum(axis=1) * (right**2).sum(axis=1))
  # A flat frame has no variance to correlate: it is not noise (flat_frames names it).
  correlation = np.where(
      denominator > 0, (left * right).sum(axis=1) / np.maximum(denominator, 1e-12), 1.0
  )
  return float(np.mean(correlation))


def withholds_measurement(warnings: tuple[ScoreWarning, ...]) -> bool:
  """Whether a file with these warnings is not measured (module docstring)."""
  return any(warning.name in UNMEASURED for warning in warnings)


def withhold_unmeasured(
    scores: np.ndarray, warnings: tuple[ScoreWarning, ...], worst: float | None
) -> tuple[np.ndarray, tuple[ScoreWarning, ...]]:
  """(scores, warnings) of one file: every score `worst` and the warnings saying so where the
  warnings withhold the measurement (and a calibration gives a worst end), else unchanged."""
  if worst is None or not withholds_measurement(warnings):
    return scores, warnings
  return np.full_like(scores, worst), _scored_as_worst(warnings, worst)


def _scored_as_worst(warnings: tuple[ScoreWarning, ...], worst: float) -> tuple[ScoreWarning, ...]:
  """The warnings, those that withhold the measurement saying what the file scored instead."""
  return tuple(
      ScoreWarning(warning.name, f"{warning.detail}; scored {worst:g}, the worst on the scale")
      if warning.name in UNMEASURED
      else warning
      for warning in warnings
  )

"""Score calibration: a least-squares line from the model's raw output onto the label's scale.

The training losses (PLCC, rank, contrastive) are blind to the scale of the output, so the trainer
fits this line on the validation split and stores it with the best checkpoint; evaluation and
`jaxvqa score` apply it. Correlations are unchanged by it.
"""

from __future__ import annotations

import numpy as np


def fit_calibration(score: np.ndarray, label: np.ndarray) -> tuple[float, float]:
  """Least-squares (slope, intercept) mapping raw scores onto the labels' scale (VMAF 0–100 for
  the compressed sets); a constant line at the label mean when the scores do not vary."""
  if len(score) < 2 or np.ptp(score) == 0:
    return 0.0, float(np.mean(label)) if len(label) else 0.0
  slope, intercept = np.polyfit(np.asarray(score, np.float64), np.asarray(label, np.float64), 1)
  return float(slope), float(intercept)


def calibrate(score: np.ndarray, calibration: tuple[float, float]) -> np.ndarray:
  slope, intercept = calibration
  return slope * np.asarray(score, np.float64) + intercept

"""Checked score arrays and the small statistics the fit, the report and the fold statistics share."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.optimize
import scipy.special
import scipy.stats

MIN_SAMPLES = 3


def finite_scores(values: Any, field: str) -> np.ndarray:
  """A 1-D float64 array of finite scores, or a ValueError naming ``field``."""
  array = np.asarray(values, np.float64)
  if array.ndim != 1:
    raise ValueError(
        f"{field} must be 1-D (one score per video), got shape {array.shape}; flatten it."
    )
  bad = int(np.sum(~np.isfinite(array)))
  if bad:
    raise ValueError(
        f"{field} holds {bad} non-finite value(s) (NaN/inf); remove or fix those videos."
    )
  return array


def paired_scores(pred: Any, label: Any, min_samples: int) -> tuple[np.ndarray, np.ndarray]:
  pred, label = finite_scores(pred, "pred"), finite_scores(label, "label")
  if pred.shape != label.shape:
    raise ValueError(
        f"pred has {pred.size} scores but label has {label.size}; they must pair up one to one."
    )
  if pred.size < min_samples:
    raise ValueError(f"got {pred.size} (pred, label) pairs; at least {min_samples} are needed.")
  return pred, label


def is_constant(values: np.ndarray) -> bool:
  return bool(np.all(values == values[0]))


def squared_error(fitted: np.ndarray, label: np.ndarray) -> float:
  return float(np.sum((fitted - label) ** 2))


def pearson_or_nan(x: np.ndarray, y: np.ndarray) -> float:
  return (
      math.nan if is_constant(x) or is_constant(y) else float(scipy.stats.pearsonr(x, y).statistic)
  )

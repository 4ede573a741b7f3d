"""Fold statistics for K-fold leave-sources-out evaluation: within-source SRCC, the collapse check,
mean ± std over folds and their table."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.optimize
import scipy.special
import scipy.stats

from jaxvqa.metrics.samples import is_constant, paired_scores

# collapse_check thresholds: a model is collapsed when its predictions spread less than a tenth as
# much as the labels, or when it separates a source's lowest and highest rung by less than a tenth
# of the labels' gap (the demo model gave a 40 kbit/s and a 1 Mbit/s clip the same score).
COLLAPSE_SPREAD_RATIO = 0.1
COLLAPSE_GAP_RATIO = 0.1
# collapse_check's `separated`: `jaxvqa doctor`'s test on every source whose encodes span a wide
# quality range (at least this fraction of the labels' range from lowest to highest rung) ...
SEPARATION_MIN_LABEL_GAP = 0.3
# ... passes when the predicted gap exceeds this fraction of the labels' range
# (doctor.MARGIN_FRACTION: 5 VMAF points on a 0-100 range).
SEPARATION_MARGIN = 0.05


def _grouped(
    predictions: Any, labels: Any, groups: Any, field: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  pred, label = paired_scores(predictions, labels, min_samples=1)
  keys = np.asarray(groups)
  if keys.shape != pred.shape:
    raise ValueError(
        f"{field} has shape {keys.shape} but predictions {pred.shape}; give one {field[:-1]} per video."
    )
  return pred, label, keys


def within_source_srcc(predictions: Any, labels: Any, sources: Any) -> float:
  """Mean over sources of the Spearman correlation between predictions and labels inside each.

  A source counts when it has at least 2 videos and its labels are not constant. Predictions
  that are constant inside a counted source contribute 0 (they rank nothing; leaving the source
  out would flatter a collapsed model). NaN when no source counts.

  Args:
    predictions, labels: [N] finite scores.
    sources: [N] source id of each video (any hashable values numpy can compare).
  """
  pred, label, keys = _grouped(predictions, labels, sources, "sources")
  correlations = []
  for key in np.unique(keys):
    rows = keys == key
    if rows.sum() < 2 or is_constant(label[rows]):
      continue
    if is_constant(pred[rows]):
      correlations.append(0.0)
    else:
      correlations.append(float(scipy.stats.spearmanr(pred[rows], label[rows]).statistic))
  return float(np.mean(correlations)) if correlations else math.nan


def collapse_check(predictions: Any, labels: Any, sources: Any, rungs: Any) -> dict[str, Any]:
  """Whether predictions have collapsed: their spread, and each source's lowest-to-highest rung gap.

  Args:
    predictions, labels: [N] finite scores, the predictions on the label's scale (calibrated):
      the spread ratio and the gaps compare the two scales directly.
    sources: [N] source id of each video.
    rungs: [N] bitrate rung of each video (higher = more bits). Where several videos of a source
      share its highest or lowest rung (e.g. one encode per codec), their mean is used.

  Returns:
    spread_ratio: std(predictions) / std(labels) (NaN when the labels are constant).
    gaps: {source: (predicted gap, label gap)}, gap = score at the highest rung − at the lowest,
      for every source with at least 2 rungs.
    mean_predicted_gap, mean_label_gap: their means over those sources (NaN when none).
    gap_sign_agreement: fraction of those sources whose predicted gap has the sign of the label
      gap (NaN when none).
    separated: among the sources whose label gap is at least SEPARATION_MIN_LABEL_GAP of the
      labels' range, the fraction whose predicted gap exceeds SEPARATION_MARGIN of it: how often
      `jaxvqa doctor`'s test would pass on such a source (NaN when none).
    collapsed: spread_ratio < COLLAPSE_SPREAD_RATIO, or mean_predicted_gap <
      COLLAPSE_GAP_RATIO × mean_label_gap (a comparison with NaN counts as not collapsed).
  """
  pred, label, keys = _grouped(predictions, labels, sources, "sources")
  rung = np.asarray(rungs)
  if rung.shape != pred.shape:
    raise ValueError(
        f"rungs has shape {rung.shape} but predictions {pred.shape}; give one rung per video."
    )
  label_std = float(np.std(label))
  spread_ratio = float(np.std(pred)) / label_std if label_std > 0 else math.nan
  gaps = {}
  for key in np.unique(keys):
    rows = keys == key
    top, bottom = rows & (rung == rung[rows].max()), rows & (rung == rung[rows].min())
    if not np.any(top & ~bottom):
      continue
    gaps[key.item() if hasattr(key, "item") else key] = (
        float(pred[top].mean() - pred[bottom].mean()),
        float(label[top].mean() - label[bottom].mean()),
    )
  predicted_gaps = np.array([gap[0] for gap in gaps.values()])
  label_gaps = np.array([gap[1] for gap in gaps.values()])
  mean_predicted_gap = float(predicted_gaps.mean()) if gaps else math.nan
  mean_label_gap = float(label_gaps.mean()) if gaps else math.nan
  label_range = float(np.ptp(label))
  wide = (label_gaps > 0) & (label_gaps >= SEPARATION_MIN_LABEL_GAP * label_range)
  separated = (
      float(np.mean(predicted_gaps[wide] > SEPARATION_MARGIN * label_range))
      if np.any(wide)
      else math.nan
  )
  return {
      "spread_ratio": spread_ratio,
      "gaps": gaps,
      "mean_predicted_gap": mean_predicted_gap,
      "mean_label_gap": mean_label_gap,
      "gap_sign_agreement": float(np.mean(np.sign(predicted_gaps) == np.sign(label_gaps)))
      if gaps
      else math.nan,
      "separated": separated,
      "collapsed": bool(
          spread_ratio < COLLAPSE_SPREAD_RATIO
          or mean_predicted_gap < COLLAPSE_GAP_RATIO * mean_label_gap
      ),
  }


def summarize_folds(per_fold: Sequence[Mapping[str, float]]) -> dict[str, tuple[float, float]]:
  """Mean and standard error over folds of every metric, NaN-safe.

  Args:
    per_fold: one {metric: value} per fold; a metric missing from a fold, or NaN there, is left out
      of that metric's statistics (the other folds still count).

  Returns:
    {metric: (mean, standard error)}, the standard error being the sample standard deviation
    (ddof=1) over the folds used divided by the square root of their number; (mean, NaN) from a
    single usable fold, (NaN, NaN) from none. Keys in first-seen order.
  """
  keys = list(dict.fromkeys(key for fold in per_fold for key in fold))
  summary = {}
  for key in keys:
    values = []
    for number, fold in enumerate(per_fold):
      value = fold.get(key, math.nan)
      try:
        values.append(float(value))
      except (TypeError, ValueError):
        raise ValueError(
            f"fold {number}: metric {key!r} is {value!r}, not a number; pass only numeric metrics"
        ) from None
    finite = np.array([v for v in values if math.isfinite(v)])
    mean = float(finite.mean()) if finite.size else math.nan
    se = float(finite.std(ddof=1) / math.sqrt(finite.size)) if finite.size > 1 else math.nan
    summary[key] = (mean, se)
  return summary


FOLD_TABLE_KEYS = (
    "srcc",
    "krcc",
    "plcc",
    "plcc_raw",
    "rmse",
    "within_source_srcc",
    "collapse/separated",
)
_FOLD_TITLES = {
    "srcc": "SRCC",
    "krcc": "KRCC",
    "plcc": "PLCC",
    "plcc_raw": "Pearson raw",
    "rmse": "RMSE",
    "within_source_srcc": "within-source SRCC",
    "collapse/separated": "separated",
}


def format_fold_table(
    rows: Mapping[str, Mapping[str, tuple[float, float]]],
    keys: Sequence[str] = FOLD_TABLE_KEYS,
    digits: int = 3,
) -> str:
  """A Markdown table of "mean ± se" per method (row) and metric (column).

  Args:
    rows: {method name: summarize_folds(...) of its folds}.
    keys: the metrics to show, in order; a method without one shows "–".
    digits: decimals of mean and standard error.
  """

  def number(value: float) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "–"

  def cell(stats: tuple[float, float] | None) -> str:
    if stats is None or not math.isfinite(stats[0]):
      return "–"
    return f"{number(stats[0])} ± {number(stats[1])}"

  lines = [
      "| method | " + " | ".join(_FOLD_TITLES.get(key, key) for key in keys) + " |",
      "| --- | " + " | ".join("---:" for _ in keys) + " |",
  ]
  for name, stats in rows.items():
    lines.append(f"| {name} | " + " | ".join(cell(stats.get(key)) for key in keys) + " |")
  return "\n".join(lines)

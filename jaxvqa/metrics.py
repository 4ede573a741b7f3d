"""Evaluation metrics of quality predictions (PAPER.md "Evaluation protocol").

SRCC and KRCC are computed on the raw predictions; PLCC and RMSE after mapping
the predictions through a monotonically increasing 4-parameter logistic fitted
to the labels (VQEG practice); the Pearson correlation of the raw predictions
(``plcc_raw``, what challenge leaderboards report) is reported beside it.

The logistic is ``f(x) = β2 + (β1 − β2)·sigmoid((x − β3)/β4)``, fitted by
``scipy.optimize.curve_fit`` under bounds, because an unbounded fit flatters:
on the demo's test split it ran β2 to −1908 and made a step through one outlier
(PLCC 0.669 where the raw Pearson was 0.30), and a decreasing fit turned
predictions with SRCC −0.34 into "PLCC 0.59". The bounds:

- bottom β2 and top β1 lie inside the labels' range, β2 ≤ β1 (the fit is
  done in the reparametrisation β2 = bottom, β1 = bottom + t·(max y − bottom),
  t ∈ [0, 1], so plain box bounds give the order);
- β4 ≥ ``MIN_SCALE_FRACTION`` × std(ŷ), so the curve cannot rise inside the
  gap between two neighbouring predictions of a tight cluster, and β4 ≤
  ``MAX_SCALE_SPANS`` × the prediction range (beyond that it is a flat line and
  the optimiser only wanders); β3 lies within one prediction range of the data.

The fit runs on standardised predictions and labels scaled to [0, 1] (so the
four parameters have comparable scales) from a few starts, and keeps the one
with the least squared error. The result is **degenerate**, and the least-squares
line is used instead (``LogisticFit.kind`` = "linear", ``reason`` says why), when:

- the raw Pearson correlation is not positive: no increasing map can make
  predictions that fall as quality rises look good, and PLCC is then the raw
  (negative) Pearson;
- there are fewer than ``MIN_LOGISTIC_POINTS`` distinct predictions (with 4 or
  5 the four parameters all but interpolate them);
- every start fails or gives non-finite values, or the curve is flat over the
  data;
- the fitted curve makes more than ``MAX_STEP_FRACTION`` of its rise between
  two neighbouring predictions: a step through one point, which the floor on
  β4 cannot rule out when that point stands apart from a cluster;
- the line fits with a smaller squared error.

With the line, PLCC equals the raw Pearson. PLCC therefore never exceeds what
the predictions support with a smooth, increasing, label-range map.

Undefined cases (see ``evaluate``): malformed input (wrong shape, fewer than 3
samples, non-finite values) raises ``ValueError``; constant predictions or
labels give NaN correlations and a ``RuntimeWarning``, so an evaluation of a
collapsed model reports instead of stopping a training run.

Fold statistics for K-fold leave-sources-out evaluation (``within_source_srcc``,
``collapse_check``, ``summarize_folds``, ``format_fold_table``) are at the end.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.optimize
import scipy.special
import scipy.stats

from jaxvqa import strict_json

MIN_SAMPLES = 3

# LogisticFit.kind values.
FIT_LOGISTIC = "logistic"  # the bounded, increasing 4-parameter logistic
FIT_LINEAR = "linear"  # a·x + b, the fallback
FIT_CONSTANT = "constant"  # constant predictions or labels: mean label
FIT_KINDS = (FIT_LOGISTIC, FIT_LINEAR, FIT_CONSTANT)

# Bounds and degeneracy rules of the logistic (module docstring).
MIN_SCALE_FRACTION = 0.1  # β4 >= this × std(ŷ)
MAX_SCALE_SPANS = 10.0  # β4 <= this × (max ŷ − min ŷ)
MIN_LOGISTIC_POINTS = 6  # distinct predictions
MAX_STEP_FRACTION = 0.5  # of the fitted rise, between two neighbouring predictions

_MAX_FUNCTION_EVALUATIONS = 10_000
# Two fits count as equally good when their squared errors differ by less than
# this fraction of the labels' total sum of squares; ties go to the logistic.
_FIT_SLACK = 1e-6
# A fitted curve that rises by less than this fraction of the label range over the data is flat.
_FLAT = 1e-9


def logistic(x: np.ndarray, beta1: float, beta2: float, beta3: float, beta4: float) -> np.ndarray:
  """4-parameter logistic ``β2 + (β1 − β2)·sigmoid((x − β3)/|β4|)``. [N] -> [N].

  ``expit`` rather than ``1/(1 + exp(...))``: no overflow warnings for points
  far from β3.
  """
  return beta2 + (beta1 - beta2) * scipy.special.expit((x - beta3) / np.abs(beta4))


@dataclasses.dataclass(frozen=True)
class LogisticFit:
  """A map from predictions to the label scale.

  Attributes:
    kind: one of ``FIT_KINDS``.
    params: (β1, β2, β3, β4) for "logistic" (β2 ≤ β1 inside the labels'
      range, β4 > 0), (slope, intercept) for "linear", (mean label,) for
      "constant".
    reason: why the logistic was not used ("" when it was).
  """

  kind: str
  params: tuple[float, ...]
  reason: str = ""

  def __call__(self, pred: np.ndarray) -> np.ndarray:
    """Maps predictions [N] to fitted label-scale values [N] (float64)."""
    x = np.asarray(pred, np.float64)
    if self.kind == FIT_LOGISTIC:
      return logistic(x, *self.params)
    if self.kind == FIT_LINEAR:
      slope, intercept = self.params
      return slope * x + intercept
    if self.kind == FIT_CONSTANT:
      return np.full_like(x, self.params[0])
    raise ValueError(f"LogisticFit.kind={self.kind!r} is unknown; use one of {FIT_KINDS}.")

  @property
  def increasing(self) -> bool:
    """Whether higher predictions map to higher values (constant counts as not)."""
    if self.kind == FIT_LOGISTIC:
      return self.params[0] > self.params[1]
    return self.kind == FIT_LINEAR and self.params[0] > 0

  def to_dict(self) -> dict[str, Any]:
    return {"kind": self.kind, "params": list(self.params), "reason": self.reason}


def _scores(values: Any, field: str) -> np.ndarray:
  """A 1-D float64 array of finite scores, or a ValueError naming ``field``."""
  array = np.asarray(values, np.float64)
  if array.ndim != 1:
    raise ValueError(f"{field} must be 1-D (one score per video), got shape {array.shape}; flatten it.")
  bad = int(np.sum(~np.isfinite(array)))
  if bad:
    raise ValueError(f"{field} holds {bad} non-finite value(s) (NaN/inf); remove or fix those videos.")
  return array


def _paired_scores(pred: Any, label: Any, min_samples: int) -> tuple[np.ndarray, np.ndarray]:
  pred, label = _scores(pred, "pred"), _scores(label, "label")
  if pred.shape != label.shape:
    raise ValueError(f"pred has {pred.size} scores but label has {label.size}; they must pair up one to one.")
  if pred.size < min_samples:
    raise ValueError(f"got {pred.size} (pred, label) pairs; at least {min_samples} are needed.")
  return pred, label


def _is_constant(values: np.ndarray) -> bool:
  return bool(np.all(values == values[0]))


def _squared_error(fitted: np.ndarray, label: np.ndarray) -> float:
  return float(np.sum((fitted - label) ** 2))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
  return math.nan if _is_constant(x) or _is_constant(y) else float(scipy.stats.pearsonr(x, y).statistic)


def _bounded_logistic(z: np.ndarray, bottom: float, rise: float, centre: float, scale: float) -> np.ndarray:
  """The logistic in the fitting parametrisation (labels scaled to [0, 1]): β2 = bottom, β1 = bottom +
  rise·(1 − bottom), so box bounds on (bottom, rise) in [0, 1] keep 0 ≤ β2 ≤ β1 ≤ 1."""
  return bottom + rise * (1.0 - bottom) * scipy.special.expit((z - centre) / scale)


def _fit_bounded_logistic(pred: np.ndarray, label: np.ndarray) -> tuple[tuple[float, ...] | None, str]:
  """Least-squares (β1, β2, β3, β4) under the module docstring's bounds; (None, why) on failure."""
  x_mean, x_std = float(pred.mean()), float(pred.std())
  y_min, y_span = float(label.min()), float(np.ptp(label))
  z = (pred - x_mean) / x_std
  u = (label - y_min) / y_span
  z_span = float(np.ptp(z))
  lower = [0.0, 0.0, float(z.min()) - z_span, MIN_SCALE_FRACTION]
  upper = [1.0, 1.0, float(z.max()) + z_span, MAX_SCALE_SPANS * z_span]
  # x_std = 1 after standardising: a scale-1 start is a gentle S over ±2 std, a
  # quarter of it a sharper one; centres at the mean and the median.
  starts = [[0.0, 1.0, centre, scale] for centre in (0.0, float(np.median(z))) for scale in (1.0, 0.25)]
  best, best_error, failure = None, math.inf, ""
  for start in starts:
    try:
      with warnings.catch_warnings():
        # Covariance of the parameters is not used; its warning is noise.
        warnings.simplefilter("ignore", scipy.optimize.OptimizeWarning)
        params, _ = scipy.optimize.curve_fit(
            _bounded_logistic, z, u, p0=start, bounds=(lower, upper), max_nfev=_MAX_FUNCTION_EVALUATIONS)
    except (RuntimeError, ValueError, FloatingPointError) as error:
      failure = f"curve_fit failed: {error}"
      continue
    error = _squared_error(_bounded_logistic(z, *params), u)
    if np.all(np.isfinite(params)) and error < best_error:
      best, best_error = params, error
  if best is None:
    return None, failure or "curve_fit gave non-finite parameters"
  bottom, rise, centre, scale = (float(p) for p in best)
  beta2 = y_min + bottom * y_span
  beta1 = y_min + (bottom + rise * (1.0 - bottom)) * y_span
  return (beta1, beta2, x_mean + centre * x_std, scale * x_std), ""


def _step_fraction(fitted_in_prediction_order: np.ndarray) -> float:
  """The largest rise between neighbouring predictions as a fraction of the whole rise over the data."""
  rise = float(fitted_in_prediction_order[-1] - fitted_in_prediction_order[0])
  return float(np.max(np.diff(fitted_in_prediction_order))) / rise


def fit_logistic(pred: Any, label: Any) -> LogisticFit:
  """Fits the bounded, increasing 4-parameter logistic from predictions to labels (module docstring).

  Args:
    pred: [N] predictions, N >= 2, finite.
    label: [N] labels, finite.

  Returns:
    The fitted map; ``kind`` says whether it is the logistic, the linear
    fallback (``reason`` says why), or a constant (constant pred or label).
    Never NaN for finite input.
  """
  pred, label = _paired_scores(pred, label, min_samples=2)
  if _is_constant(pred) or _is_constant(label):
    return LogisticFit(FIT_CONSTANT, (float(np.mean(label)),), "constant predictions or labels")

  slope, intercept = np.polyfit(pred, label, deg=1)

  def line(reason: str) -> LogisticFit:
    return LogisticFit(FIT_LINEAR, (float(slope), float(intercept)), reason)

  pearson = _pearson(pred, label)
  if not pearson > 0:
    return line(f"raw Pearson {pearson:.3g} <= 0: no increasing map fits")
  distinct = np.unique(pred).size
  if distinct < MIN_LOGISTIC_POINTS:
    return line(f"{distinct} distinct predictions; the logistic needs {MIN_LOGISTIC_POINTS}")
  params, failure = _fit_bounded_logistic(pred, label)
  if params is None:
    return line(failure)
  fit = LogisticFit(FIT_LOGISTIC, params)
  fitted = fit(pred)
  if not np.all(np.isfinite(fitted)) or np.ptp(fitted) <= _FLAT * np.ptp(label):
    return line("the logistic is flat over the data")
  step = _step_fraction(fit(np.unique(pred)))
  if step > MAX_STEP_FRACTION:
    return line(f"the logistic makes {step:.0%} of its rise between two neighbouring predictions (a step)")
  slack = _FIT_SLACK * _squared_error(label, label.mean())
  if _squared_error(fitted, label) > _squared_error(slope * pred + intercept, label) + slack:
    return line("the line fits better than the bounded logistic")
  return fit


@dataclasses.dataclass(frozen=True)
class QualityReport:
  """Agreement of predictions with labels on one data set (or one model).

  Attributes:
    plcc: Pearson correlation after the bounded increasing logistic (``fit``);
      with the linear fallback it equals ``plcc_raw`` (negative when the
      predictions fall as the labels rise).
    srcc: Spearman rank correlation of the raw predictions.
    krcc: Kendall tau-b of the raw predictions.
    rmse: root mean squared error after the fit, in label units.
    plcc_raw: Pearson correlation of the raw predictions, no fit; read it
      beside ``plcc``: a large gap means the fit, not the ranking, made plcc.
    count: number of videos.
    fit: ``LogisticFit.kind`` used for plcc and rmse ("logistic", "linear"
      or "constant").
    name: data set or model name, for tables.
  """

  plcc: float
  srcc: float
  krcc: float
  rmse: float
  plcc_raw: float
  count: int
  fit: str
  name: str = ""

  def table(self) -> str:
    """This report as an aligned text table (header + one row)."""
    return format_table([self])

  def to_dict(self) -> dict[str, Any]:
    """Field name -> value; NaN stays NaN."""
    return dataclasses.asdict(self)

  def to_json(self, **json_kwargs: Any) -> str:
    """Strict JSON (NaN written as null, since JSON has no NaN)."""
    return strict_json.dumps(self.to_dict(), **json_kwargs)

  @classmethod
  def from_dict(cls, data: Mapping[str, Any]) -> QualityReport:
    """Inverse of ``to_dict``/``to_json`` (null reads back as NaN)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
      raise ValueError(f"QualityReport.from_dict: unknown key(s) {unknown}; expected keys are {sorted(fields)}.")
    missing = sorted(n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING)
    if missing:
      raise ValueError(f"QualityReport.from_dict: missing key(s) {missing}.")
    values = dict(data)
    for name in ("plcc", "srcc", "krcc", "rmse", "plcc_raw"):
      values[name] = math.nan if values[name] is None else float(values[name])
    values["count"] = int(values["count"])
    return cls(**values)

  @classmethod
  def from_json(cls, text: str) -> QualityReport:
    return cls.from_dict(json.loads(text))


_TABLE_COLUMNS = (
    ("name", "name"),
    ("count", "count"),
    ("PLCC", "plcc"),
    ("Pearson raw", "plcc_raw"),
    ("SRCC", "srcc"),
    ("KRCC", "krcc"),
    ("RMSE", "rmse"),
    ("fit", "fit"),
)


def _cell(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:.4f}"
  return str(value) if value != "" else "-"


def format_table(reports: Sequence[QualityReport]) -> str:
  """Several reports as one aligned text table, one row per report.

  Text columns are left-aligned, numbers right-aligned.
  """
  header = [title for title, _ in _TABLE_COLUMNS]
  rows = [[_cell(getattr(report, field)) for _, field in _TABLE_COLUMNS] for report in reports]
  widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
  text_columns = {0, len(header) - 1}

  def line(cells: list[str]) -> str:
    return "  ".join(
        cell.ljust(width) if i in text_columns else cell.rjust(width)
        for i, (cell, width) in enumerate(zip(cells, widths))
    ).rstrip()

  rule = "  ".join("-" * width for width in widths)
  return "\n".join([line(header), rule, *(line(row) for row in rows)])


def evaluate(pred: Any, label: Any, name: str = "") -> QualityReport:
  """PLCC, raw Pearson, SRCC, KRCC and RMSE of predictions against labels.

  Args:
    pred: [N] predicted scores (any array-like; a jax.Array works).
    label: [N] labels.
    name: data set or model name carried into the report.

  Returns:
    The report. When pred or label is constant the correlations are NaN (a
    RuntimeWarning says which), and rmse is that of predicting the mean label.

  Raises:
    ValueError: inputs not 1-D, of different lengths, non-finite, or fewer
      than 3 pairs.
  """
  pred, label = _paired_scores(pred, label, min_samples=MIN_SAMPLES)
  fit = fit_logistic(pred, label)
  fitted = fit(pred)
  plcc_raw = _pearson(pred, label)
  rmse = float(np.sqrt(np.mean((fitted - label) ** 2)))
  constant = [field for field, values in (("pred", pred), ("label", label)) if _is_constant(values)]
  if constant:
    warnings.warn(
        f"evaluate({name!r}): {' and '.join(constant)} constant over {pred.size} videos;"
        " correlations are undefined and reported as NaN.",
        RuntimeWarning,
        stacklevel=2,
    )
    srcc = krcc = math.nan
  else:
    srcc = float(scipy.stats.spearmanr(pred, label).statistic)
    krcc = float(scipy.stats.kendalltau(pred, label).statistic)
  return QualityReport(
      # Through a line Pearson keeps its magnitude; its sign is that of the raw predictions, so a
      # model that ranks backwards is not reported with a positive PLCC.
      plcc=_pearson(fitted, label) if fit.kind == FIT_LOGISTIC else plcc_raw,
      srcc=srcc,
      krcc=krcc,
      rmse=rmse,
      plcc_raw=plcc_raw,
      count=int(pred.size),
      fit=fit.kind,
      name=name,
  )


# --- fold statistics (K-fold leave-sources-out evaluation) ---

# collapse_check thresholds: a model is collapsed when its predictions spread less than a tenth as
# much as the labels, or when it separates a source's lowest and highest rung by less than a tenth
# of the labels' gap (the demo model gave a 40 kbit/s and a 1 Mbit/s clip the same score).
COLLAPSE_SPREAD_RATIO = 0.1
COLLAPSE_GAP_RATIO = 0.1


def _grouped(predictions: Any, labels: Any, groups: Any, field: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  pred, label = _paired_scores(predictions, labels, min_samples=1)
  keys = np.asarray(groups)
  if keys.shape != pred.shape:
    raise ValueError(f"{field} has shape {keys.shape} but predictions {pred.shape}; give one {field[:-1]} per video.")
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
    if rows.sum() < 2 or _is_constant(label[rows]):
      continue
    if _is_constant(pred[rows]):
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
    collapsed: spread_ratio < COLLAPSE_SPREAD_RATIO, or mean_predicted_gap <
      COLLAPSE_GAP_RATIO × mean_label_gap (a comparison with NaN counts as not collapsed).
  """
  pred, label, keys = _grouped(predictions, labels, sources, "sources")
  rung = np.asarray(rungs)
  if rung.shape != pred.shape:
    raise ValueError(f"rungs has shape {rung.shape} but predictions {pred.shape}; give one rung per video.")
  label_std = float(np.std(label))
  spread_ratio = float(np.std(pred)) / label_std if label_std > 0 else math.nan
  gaps = {}
  for key in np.unique(keys):
    rows = keys == key
    top, bottom = rows & (rung == rung[rows].max()), rows & (rung == rung[rows].min())
    if not np.any(top & ~bottom):
      continue
    gaps[key.item() if hasattr(key, "item") else key] = (
        float(pred[top].mean() - pred[bottom].mean()), float(label[top].mean() - label[bottom].mean()))
  predicted_gaps = np.array([gap[0] for gap in gaps.values()])
  label_gaps = np.array([gap[1] for gap in gaps.values()])
  mean_predicted_gap = float(predicted_gaps.mean()) if gaps else math.nan
  mean_label_gap = float(label_gaps.mean()) if gaps else math.nan
  return {
      "spread_ratio": spread_ratio,
      "gaps": gaps,
      "mean_predicted_gap": mean_predicted_gap,
      "mean_label_gap": mean_label_gap,
      "gap_sign_agreement": float(np.mean(np.sign(predicted_gaps) == np.sign(label_gaps))) if gaps else math.nan,
      "collapsed": bool(spread_ratio < COLLAPSE_SPREAD_RATIO or mean_predicted_gap < COLLAPSE_GAP_RATIO * mean_label_gap),
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
        raise ValueError(f"fold {number}: metric {key!r} is {value!r}, not a number; pass only numeric metrics") from None
    finite = np.array([v for v in values if math.isfinite(v)])
    mean = float(finite.mean()) if finite.size else math.nan
    se = float(finite.std(ddof=1) / math.sqrt(finite.size)) if finite.size > 1 else math.nan
    summary[key] = (mean, se)
  return summary


FOLD_TABLE_KEYS = ("srcc", "krcc", "plcc", "plcc_raw", "rmse", "within_source_srcc")
_FOLD_TITLES = {"srcc": "SRCC", "krcc": "KRCC", "plcc": "PLCC", "plcc_raw": "Pearson raw", "rmse": "RMSE",
                "within_source_srcc": "within-source SRCC"}


def format_fold_table(rows: Mapping[str, Mapping[str, tuple[float, float]]], keys: Sequence[str] = FOLD_TABLE_KEYS,
                      digits: int = 3) -> str:
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

  lines = ["| method | " + " | ".join(_FOLD_TITLES.get(key, key) for key in keys) + " |",
           "| --- | " + " | ".join("---:" for _ in keys) + " |"]
  for name, stats in rows.items():
    lines.append(f"| {name} | " + " | ".join(cell(stats.get(key)) for key in keys) + " |")
  return "\n".join(lines)

"""Evaluation metrics of quality predictions (PAPER.md "Evaluation protocol").

SRCC and KRCC are computed on the raw predictions; PLCC and RMSE after mapping
the predictions through a 4-parameter logistic fitted to the labels (VQEG
practice), and PLCC also without any fit (challenge leaderboards use it).

The logistic is ``f(x) = β2 + (β1 − β2) / (1 + exp(−(x − β3)/|β4|))``. It is
fitted by ``scipy.optimize.curve_fit`` from two starts: PAPER.md's
``[max y, min y, mean ŷ, 0.5]``, then the same with ``β4 = std(ŷ)`` (0.5 is
far too steep when predictions span hundreds of units and the first start then
stalls on a step function). The second start is kept only when its squared
error is clearly smaller (both usually reach the same optimum). A
straight line is used instead when neither start converges to a finite fit,
when there are fewer than 4 points (4 parameters), or when the best logistic
fits worse than the line (a logistic can approach any line, so that means it
did not converge). ``LogisticFit.kind`` records which one was used.

Undefined cases (see ``evaluate``): malformed input (wrong shape, fewer than 3
samples, non-finite values) raises ``ValueError``; constant predictions or
labels give NaN correlations and a ``RuntimeWarning``, so an evaluation of a
collapsed model reports instead of stopping a training run.
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

MIN_SAMPLES = 3

# LogisticFit.kind values.
FIT_LOGISTIC = "logistic"  # from PAPER.md's start
FIT_LOGISTIC_SCALED = "logistic_scaled"  # from the start with β4 = std(ŷ)
FIT_LINEAR = "linear"  # a·x + b, the fallback
FIT_CONSTANT = "constant"  # constant predictions or labels: mean label
FIT_KINDS = (FIT_LOGISTIC, FIT_LOGISTIC_SCALED, FIT_LINEAR, FIT_CONSTANT)

_LOGISTIC_PARAMS = 4
_MAX_FUNCTION_EVALUATIONS = 10_000
# Two fits count as equally good when their squared errors differ by less than
# this fraction of the labels' total sum of squares; it lets a logistic that
# only approximates a perfectly linear relation still beat the line.
_FIT_SLACK = 1e-6


def logistic(x: np.ndarray, beta1: float, beta2: float, beta3: float, beta4: float) -> np.ndarray:
  """4-parameter logistic ``β2 + (β1 − β2)·sigmoid((x − β3)/|β4|)``. [N] -> [N].

  ``expit`` rather than ``1/(1 + exp(...))``: no overflow warnings for points
  far from β3.
  """
  return beta2 + (beta1 - beta2) * scipy.special.expit((x - beta3) / np.abs(beta4))


@dataclasses.dataclass(frozen=True)
class LogisticFit:
  """A monotone map from predictions to the label scale.

  Attributes:
    kind: one of ``FIT_KINDS``.
    params: (β1, β2, β3, β4) for the logistic kinds, (slope, intercept) for
      "linear", (mean label,) for "constant".
  """

  kind: str
  params: tuple[float, ...]

  def __call__(self, pred: np.ndarray) -> np.ndarray:
    """Maps predictions [N] to fitted label-scale values [N] (float64)."""
    x = np.asarray(pred, np.float64)
    if self.kind in (FIT_LOGISTIC, FIT_LOGISTIC_SCALED):
      return logistic(x, *self.params)
    if self.kind == FIT_LINEAR:
      slope, intercept = self.params
      return slope * x + intercept
    if self.kind == FIT_CONSTANT:
      return np.full_like(x, self.params[0])
    raise ValueError(f"LogisticFit.kind={self.kind!r} is unknown; use one of {FIT_KINDS}.")


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


def _fit_logistic_from(pred: np.ndarray, label: np.ndarray, start: list[float], kind: str) -> LogisticFit | None:
  """curve_fit from one start; None when it fails or gives non-finite output."""
  try:
    with warnings.catch_warnings():
      # Covariance of the parameters is not used; its warning is noise.
      warnings.simplefilter("ignore", scipy.optimize.OptimizeWarning)
      params, _ = scipy.optimize.curve_fit(logistic, pred, label, p0=start, maxfev=_MAX_FUNCTION_EVALUATIONS)
  except (RuntimeError, ValueError, TypeError, FloatingPointError):
    return None
  fit = LogisticFit(kind, tuple(float(p) for p in params))
  if not (np.all(np.isfinite(params)) and params[3] != 0 and np.all(np.isfinite(fit(pred)))):
    return None
  return fit


def fit_logistic(pred: Any, label: Any) -> LogisticFit:
  """Fits the 4-parameter logistic from predictions to labels (module docstring).

  Args:
    pred: [N] predictions, N >= 2, finite.
    label: [N] labels, finite.

  Returns:
    The fitted map; ``kind`` says whether it is a logistic (and from which
    start), the linear fallback, or a constant (constant pred or label).
  """
  pred, label = _paired_scores(pred, label, min_samples=2)
  if _is_constant(pred) or _is_constant(label):
    return LogisticFit(FIT_CONSTANT, (float(np.mean(label)),))

  slope, intercept = np.polyfit(pred, label, deg=1)
  line = LogisticFit(FIT_LINEAR, (float(slope), float(intercept)))
  if pred.size < _LOGISTIC_PARAMS:
    return line

  # In order of preference: a later start must be clearly better to win, so
  # two starts that reach the same optimum report PAPER.md's.
  starts = {
      FIT_LOGISTIC: [label.max(), label.min(), pred.mean(), 0.5],
      FIT_LOGISTIC_SCALED: [label.max(), label.min(), pred.mean(), pred.std()],
  }
  slack = _FIT_SLACK * _squared_error(label, label.mean())
  best, best_error = None, math.inf
  for kind, start in starts.items():
    fit = _fit_logistic_from(pred, label, start, kind)
    error = math.inf if fit is None else _squared_error(fit(pred), label)
    if error < best_error - slack:
      best, best_error = fit, error

  if best is None or best_error > _squared_error(line(pred), label) + slack:
    return line
  return best


@dataclasses.dataclass(frozen=True)
class QualityReport:
  """Agreement of predictions with labels on one data set (or one model).

  Attributes:
    plcc: Pearson correlation after the fit (``fit``).
    srcc: Spearman rank correlation of the raw predictions.
    krcc: Kendall tau-b of the raw predictions.
    rmse: root mean squared error after the fit, in label units.
    plcc_raw: Pearson correlation of the raw predictions, no fit.
    count: number of videos.
    fit: ``LogisticFit.kind`` used for plcc and rmse.
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
    data = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.to_dict().items()}
    return json.dumps(data, allow_nan=False, **json_kwargs)

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
    ("SRCC", "srcc"),
    ("KRCC", "krcc"),
    ("RMSE", "rmse"),
    ("PLCC raw", "plcc_raw"),
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


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
  return math.nan if _is_constant(x) or _is_constant(y) else float(scipy.stats.pearsonr(x, y).statistic)


def evaluate(pred: Any, label: Any, name: str = "") -> QualityReport:
  """PLCC, SRCC, KRCC, RMSE and raw PLCC of predictions against labels.

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
      plcc=_pearson(fitted, label),
      srcc=srcc,
      krcc=krcc,
      rmse=rmse,
      plcc_raw=_pearson(pred, label),
      count=int(pred.size),
      fit=fit.kind,
      name=name,
  )

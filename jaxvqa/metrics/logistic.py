"""The bounded, increasing logistic that maps predictions to labels before PLCC and RMSE.

See the package docstring (`jaxvqa.metrics`) for the bounds and the degeneracy rules."""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import numpy as np
import scipy.optimize
import scipy.special
import scipy.stats

from jaxvqa.metrics.samples import is_constant, paired_scores, pearson_or_nan, squared_error

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


def _bounded_logistic(
    z: np.ndarray, bottom: float, rise: float, centre: float, scale: float
) -> np.ndarray:
  """The logistic in the fitting parametrisation (labels scaled to [0, 1]): β2 = bottom, β1 = bottom +
  rise·(1 − bottom), so box bounds on (bottom, rise) in [0, 1] keep 0 ≤ β2 ≤ β1 ≤ 1."""
  return bottom + rise * (1.0 - bottom) * scipy.special.expit((z - centre) / scale)


def _fit_bounded_logistic(
    pred: np.ndarray, label: np.ndarray
) -> tuple[tuple[float, ...] | None, str]:
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
  starts = [
      [0.0, 1.0, centre, scale] for centre in (0.0, float(np.median(z))) for scale in (1.0, 0.25)
  ]
  best, best_error, failure = None, math.inf, ""
  for start in starts:
    try:
      with warnings.catch_warnings():
        # Covariance of the parameters is not used; its warning is noise.
        warnings.simplefilter("ignore", scipy.optimize.OptimizeWarning)
        params, _ = scipy.optimize.curve_fit(
            _bounded_logistic,
            z,
            u,
            p0=start,
            bounds=(lower, upper),
            max_nfev=_MAX_FUNCTION_EVALUATIONS,
        )
    except (RuntimeError, ValueError, FloatingPointError) as error:
      failure = f"curve_fit failed: {error}"
      continue
    error = squared_error(_bounded_logistic(z, *params), u)
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
  pred, label = paired_scores(pred, label, min_samples=2)
  if is_constant(pred) or is_constant(label):
    return LogisticFit(FIT_CONSTANT, (float(np.mean(label)),), "constant predictions or labels")

  slope, intercept = np.polyfit(pred, label, deg=1)

  def line(reason: str) -> LogisticFit:
    return LogisticFit(FIT_LINEAR, (float(slope), float(intercept)), reason)

  pearson = pearson_or_nan(pred, label)
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
    return line(
        f"the logistic makes {step:.0%} of its rise between two neighbouring predictions (a step)"
    )
  slack = _FIT_SLACK * squared_error(label, label.mean())
  if squared_error(fitted, label) > squared_error(slope * pred + intercept, label) + slack:
    return line("the line fits better than the bounded logistic")
  return fit

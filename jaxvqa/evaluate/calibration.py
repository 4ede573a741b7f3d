"""Score calibration: the model's raw output mapped onto the label's scale.

The training losses (PLCC, rank, contrastive) are blind to the scale of the output, so the trainer
fits this map on the validation split and stores it with the best checkpoint; evaluation and
`jaxvqa score` apply it. It is the metrics' bounded, increasing logistic (`metrics.fit_logistic`),
so a score never leaves the validation labels' range and never reverses the model's order:

- "logistic": the fitted curve, whose range lies inside the labels' range by construction;
- "linear" (the metrics' fallback, e.g. fewer than 6 validation videos): the least-squares line,
  clipped to the labels' range. When that line falls (the validation scores do not rise with the
  labels, as after a few steps of training) no increasing map fits; the raw validation range is
  then mapped linearly onto the labels' range instead, so scores are on the label scale and keep
  the model's order, and `describe()` says that nothing was fitted. (A falling line would reverse
  the order, and turn a backwards model's negative test SRCC positive; a constant would hide its
  ranking from every later evaluation.)
- "constant": the mean label (constant scores or labels).

The trainer fits it on the stored label (for public MOS sets their min-max scaling to [0, 1]) and
stores `in_units(scale)`: the same map followed by the affine return to the set's own units
(`jaxvqa.data.label_scale`), which is again a logistic, line or constant, so every reader of a
calibration applies it unchanged. For a lower-is-better set (DMOS) that map decreases: its
logistic's top lies below its bottom. `units` names the scale; a calibration saved without it
maps onto the run's stored label (VMAF for make-dataset sets, [0, 1] for older MOS runs).

Checkpoints written before this stored a bare `[slope, intercept]` line; `from_saved` reads those
as an unclipped line, as they were applied then.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxvqa import metrics
from jaxvqa.data import label_scale


@dataclasses.dataclass(frozen=True)
class Calibration:
  """A monotone map raw score -> label scale, clipped to [low, high].

  Attributes:
    fit: the map before clipping.
    low, high: the labels' range it was fitted on (-inf, inf for legacy lines).
    units: the scale its output is in; None: the run's stored label (module docstring).
  """

  fit: metrics.LogisticFit
  low: float = -math.inf
  high: float = math.inf
  units: label_scale.LabelScale | None = None

  def __call__(self, score: Any) -> np.ndarray:
    """float64 [N] label-scale scores of raw scores [N]."""
    return np.clip(self.fit(np.asarray(score, np.float64)), self.low, self.high)

  def to_dict(self) -> dict[str, Any]:
    """The JSON form stored in checkpoints and written by eval.py and `jaxvqa score`."""
    bounded = math.isfinite(self.low) and math.isfinite(self.high)
    saved = {**self.fit.to_dict(), "label_range": [self.low, self.high] if bounded else None}
    # Without units the form is as before, so an older model's identity (its hash) is unchanged.
    return saved if self.units is None else {**saved, "units": self.units.to_dict()}

  def in_units(self, scale: label_scale.LabelScale) -> Calibration:
    """This map, fitted on the stored label, followed by `scale.to_units` (affine): a map of the
    raw score onto the set's own units, of the same kind, decreasing for a lower-is-better set."""

    def to_units(value: float) -> float:
      return float(scale.to_units(value))

    slope = to_units(1.0) - to_units(0.0)
    kind, params = self.fit.kind, self.fit.params
    if kind == metrics.FIT_LOGISTIC:
      top, bottom, centre, width = params
      params = (to_units(top), to_units(bottom), centre, width)
    elif kind == metrics.FIT_LINEAR:
      params = (slope * params[0], to_units(params[1]))
    else:
      params = (to_units(params[0]),)
    low, high = self.low, self.high
    if math.isfinite(low) and math.isfinite(high):
      low, high = sorted((to_units(low), to_units(high)))
    fit = metrics.LogisticFit(kind, params, self.fit.reason)
    return Calibration(fit, low, high, units=scale)

  def describe(self) -> str:
    """One line for humans, e.g. "logistic 20.1 + (95.3 − 20.1)·sigmoid((raw − 0.41)/0.12)"."""
    kind, params = self.fit.kind, self.fit.params
    if kind == metrics.FIT_LOGISTIC:
      top, bottom, centre, scale = params
      text = f"logistic {bottom:.6g} + ({top:.6g} - {bottom:.6g})*sigmoid((raw - {centre:.6g})/{scale:.6g})"
    elif kind == metrics.FIT_LINEAR:
      text = f"{params[0]:.6g} * raw + {params[1]:.6g}"
    else:
      text = f"constant {params[0]:.6g}"
    if math.isfinite(self.low) and math.isfinite(self.high):
      text += f", clipped to [{self.low:.6g}, {self.high:.6g}]"
    if self.units is not None:
      text += f", in {self.units.describe()}"
    return text + (f" ({self.fit.reason})" if self.fit.reason else "")


def fit_calibration(score: Any, label: Any) -> Calibration:
  """The calibration of raw validation scores [N] onto their labels [N] (module docstring).

  With fewer than 2 pairs the map is the constant mean label (0 without labels).
  """
  score, label = np.asarray(score, np.float64), np.asarray(label, np.float64)
  if len(score) < 2:
    mean = float(np.mean(label)) if len(label) else 0.0
    return Calibration(
        metrics.LogisticFit(metrics.FIT_CONSTANT, (mean,), "fewer than 2 validation scores"),
        mean,
        mean,
    )
  fit = metrics.fit_logistic(score, label)
  low, high = float(label.min()), float(label.max())
  if fit.kind == metrics.FIT_LINEAR and not fit.increasing:
    slope = (high - low) / float(np.ptp(score))
    fit = metrics.LogisticFit(
        metrics.FIT_LINEAR,
        (slope, low - slope * float(score.min())),
        "validation scores do not rise with the labels: their range is mapped onto the labels' "
        "range, order kept, nothing fitted",
    )
  return Calibration(fit, low, high)


def from_saved(saved: Mapping[str, Any] | Sequence[float] | None) -> Calibration | None:
  """A calibration from its `to_dict` form, a legacy `[slope, intercept]` list, or None."""
  if saved is None:
    return None
  if isinstance(saved, Mapping):
    missing = sorted({"kind", "params"} - set(saved))
    if missing:
      raise ValueError(
          f"the checkpoint's calibration lacks {missing}: {dict(saved)!r}; re-run the "
          "validation (train.py on the same workdir) to store a new one"
      )
    fit = metrics.LogisticFit(
        str(saved["kind"]), tuple(float(p) for p in saved["params"]), str(saved.get("reason", ""))
    )
    if fit.kind not in metrics.FIT_KINDS:
      raise ValueError(
          f"the checkpoint's calibration kind {fit.kind!r} is unknown; expected one of "
          f"{metrics.FIT_KINDS}"
      )
    units = saved.get("units")
    units = label_scale.LabelScale.from_dict(units) if units is not None else None
    label_range = saved.get("label_range")
    if label_range is None:
      return Calibration(fit, units=units)
    return Calibration(fit, float(label_range[0]), float(label_range[1]), units=units)
  slope, intercept = (float(value) for value in saved)
  return Calibration(
      metrics.LogisticFit(metrics.FIT_LINEAR, (slope, intercept), "legacy unclipped line")
  )


def calibrate(score: Any, calibration: Calibration) -> np.ndarray:
  """float64 [N] label-scale scores of raw scores [N]."""
  return calibration(score)

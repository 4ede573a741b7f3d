"""`evaluate`: PLCC, raw Pearson, SRCC, KRCC and RMSE of one set of predictions, as a `QualityReport`."""

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
from jaxvqa.metrics.logistic import FIT_LOGISTIC, fit_logistic
from jaxvqa.metrics.samples import MIN_SAMPLES, is_constant, paired_scores, pearson_or_nan


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
      raise ValueError(
          f"QualityReport.from_dict: unknown key(s) {unknown}; expected keys are {sorted(fields)}."
      )
    missing = sorted(
        n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
    )
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
  pred, label = paired_scores(pred, label, min_samples=MIN_SAMPLES)
  fit = fit_logistic(pred, label)
  fitted = fit(pred)
  plcc_raw = pearson_or_nan(pred, label)
  rmse = float(np.sqrt(np.mean((fitted - label) ** 2)))
  constant = [field for field, values in (("pred", pred), ("label", label)) if is_constant(values)]
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
      plcc=pearson_or_nan(fitted, label) if fit.kind == FIT_LOGISTIC else plcc_raw,
      srcc=srcc,
      krcc=krcc,
      rmse=rmse,
      plcc_raw=plcc_raw,
      count=int(pred.size),
      fit=fit.kind,
      name=name,
  )

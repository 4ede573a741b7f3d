"""Evaluation metrics of quality predictions (docs/METHOD.md "Evaluation protocol").

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

Modules: ``samples`` (checked score arrays), ``logistic`` (the fit), ``report`` (``evaluate``,
``QualityReport``, ``format_table``) and ``folds``, the fold statistics of K-fold leave-sources-out
evaluation (``within_source_srcc``, ``collapse_check``, ``summarize_folds``,
``format_fold_table``). Every public name is importable from ``jaxvqa.metrics``.
"""

from jaxvqa.metrics.folds import (
    COLLAPSE_GAP_RATIO,
    COLLAPSE_SPREAD_RATIO,
    FOLD_TABLE_KEYS,
    SEPARATION_MARGIN,
    SEPARATION_MIN_LABEL_GAP,
    collapse_check,
    format_fold_table,
    summarize_folds,
    within_source_srcc,
)
from jaxvqa.metrics.logistic import (
    FIT_CONSTANT,
    FIT_KINDS,
    FIT_LINEAR,
    FIT_LOGISTIC,
    MAX_SCALE_SPANS,
    MAX_STEP_FRACTION,
    MIN_LOGISTIC_POINTS,
    MIN_SCALE_FRACTION,
    LogisticFit,
    fit_logistic,
    logistic,
)
from jaxvqa.metrics.report import QualityReport, evaluate, format_table
from jaxvqa.metrics.samples import MIN_SAMPLES

__all__ = [
    "COLLAPSE_GAP_RATIO",
    "COLLAPSE_SPREAD_RATIO",
    "FIT_CONSTANT",
    "FIT_KINDS",
    "FIT_LINEAR",
    "FIT_LOGISTIC",
    "FOLD_TABLE_KEYS",
    "MAX_SCALE_SPANS",
    "MAX_STEP_FRACTION",
    "MIN_LOGISTIC_POINTS",
    "MIN_SAMPLES",
    "MIN_SCALE_FRACTION",
    "LogisticFit",
    "QualityReport",
    "SEPARATION_MARGIN",
    "SEPARATION_MIN_LABEL_GAP",
    "collapse_check",
    "evaluate",
    "fit_logistic",
    "format_fold_table",
    "format_table",
    "logistic",
    "summarize_folds",
    "within_source_srcc",
]

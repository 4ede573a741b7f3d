"""Metrics against scipy and independent NumPy loops; logistic fit recovery; report I/O."""

from __future__ import annotations

import json
import math
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.special
import scipy.stats

from jaxvqa import metrics
from jaxvqa.evaluate import calibration as calibration_lib

# --- independent references, plain loops ---


def reference_pearson(x, y):
  n = len(x)
  mx, my = sum(x) / n, sum(y) / n
  cov = sum((a - mx) * (b - my) for a, b in zip(x, y))
  return cov / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))


def reference_average_ranks(values):
  ranks = [0.0] * len(values)
  for i, v in enumerate(values):
    below = sum(1 for w in values if w < v)
    equal = sum(1 for w in values if w == v)
    ranks[i] = below + (equal + 1) / 2
  return ranks


def reference_kendall_tau_b(x, y):
  concordant = discordant = ties_x = ties_y = 0
  for i in range(len(x)):
    for j in range(i + 1, len(x)):
      dx, dy = x[i] - x[j], y[i] - y[j]
      if dx == 0 and dy == 0:
        continue
      if dx == 0:
        ties_x += 1
      elif dy == 0:
        ties_y += 1
      elif dx * dy > 0:
        concordant += 1
      else:
        discordant += 1
  return (concordant - discordant) / math.sqrt(
      (concordant + discordant + ties_x) * (concordant + discordant + ties_y)
  )


def noisy_scores(seed, size=40):
  rng = np.random.default_rng(seed)
  pred = rng.normal(size=size)
  label = 50 + 20 * np.tanh(pred) + rng.normal(scale=5.0, size=size)
  if seed % 2:
    pred = np.round(pred, 1)  # ties in the predictions
    label = np.round(label)  # and in the labels
  return pred, label


@pytest.mark.parametrize("seed", range(20))
def test_correlations_match_scipy_and_loops(seed):
  pred, label = noisy_scores(seed)
  report = metrics.evaluate(pred, label)
  assert report.count == len(pred)

  np.testing.assert_allclose(
      report.plcc_raw, scipy.stats.pearsonr(pred, label).statistic, rtol=1e-10
  )
  np.testing.assert_allclose(report.plcc_raw, reference_pearson(pred, label), rtol=1e-9)
  np.testing.assert_allclose(report.srcc, scipy.stats.spearmanr(pred, label).statistic, rtol=1e-10)
  np.testing.assert_allclose(
      report.srcc,
      reference_pearson(reference_average_ranks(pred), reference_average_ranks(label)),
      rtol=1e-9,
  )
  np.testing.assert_allclose(report.krcc, scipy.stats.kendalltau(pred, label).statistic, rtol=1e-10)
  np.testing.assert_allclose(report.krcc, reference_kendall_tau_b(pred, label), rtol=1e-9)

  fit = metrics.fit_logistic(pred, label)
  assert report.fit == fit.kind
  fitted = fit(pred)
  np.testing.assert_allclose(report.plcc, reference_pearson(fitted, label), rtol=1e-9)
  np.testing.assert_allclose(
      report.rmse,
      math.sqrt(sum((a - b) ** 2 for a, b in zip(fitted, label)) / len(label)),
      rtol=1e-9,
  )
  # The fit is least squares: never worse than the best line through the data.
  slope, intercept = np.polyfit(pred, label, 1)
  line_rmse = math.sqrt(np.mean((slope * pred + intercept - label) ** 2))
  assert report.rmse <= line_rmse * (1 + 1e-6)


def _independent_logistic(x, b1, b2, b3, b4):
  # exp of at most 700: no overflow when a step-like fit puts points far from β3
  return np.array([b2 + (b1 - b2) / (1 + math.exp(min(700.0, -(v - b3) / abs(b4)))) for v in x])


def _scipy_unbounded_fit(pred, label, start):
  """The fit as it was before the bounds: scipy's curve_fit of the logistic, no constraints."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    params, _ = scipy.optimize.curve_fit(
        _independent_logistic, pred, label, p0=start, maxfev=10_000
    )
  return params


@pytest.mark.parametrize(
    "beta, low, high",
    [
        ((90.0, 20.0, 0.5, 0.1), 0.0, 1.0),
        ((4.5, 1.0, 3.0, 0.8), -2.0, 8.0),
        ((100.0, 0.0, -2.0, 0.5), -5.0, 1.0),
        ((90.0, 20.0, 3000.0, 500.0), 0.0, 10_000.0),  # predictions on a wide scale
    ],
)
def test_clean_logistic_relation_is_recovered_as_scipy_fits_it(beta, low, high):
  rng = np.random.default_rng(0)
  pred = rng.uniform(low, high, size=200)
  noise = 0.02 * (beta[0] - beta[1])
  label = _independent_logistic(pred, *beta) + rng.normal(scale=noise, size=pred.size)
  reference = _scipy_unbounded_fit(
      pred, label, [label.max(), label.min(), np.median(pred), pred.std()]
  )
  # Well conditioned: scipy's free optimum already satisfies the bounds, so they must not move it.
  assert label.min() <= reference[1] <= reference[0] <= label.max()
  assert abs(reference[3]) >= metrics.MIN_SCALE_FRACTION * pred.std()

  fit = metrics.fit_logistic(pred, label)
  assert fit.kind == metrics.FIT_LOGISTIC, fit.reason
  span = beta[0] - beta[1]
  np.testing.assert_allclose(fit(pred), _independent_logistic(pred, *reference), atol=1e-3 * span)
  recovered = np.array(fit.params)
  np.testing.assert_allclose(recovered[:2], reference[:2], atol=1e-3 * span)
  np.testing.assert_allclose(
      recovered[2:], [reference[2], abs(reference[3])], atol=1e-3 * (high - low)
  )
  report = metrics.evaluate(pred, label)
  np.testing.assert_allclose(
      report.plcc,
      scipy.stats.pearsonr(_independent_logistic(pred, *reference), label).statistic,
      atol=1e-6,
  )
  assert report.plcc > report.plcc_raw  # the S shape is real: the logistic beats the line


def test_fit_does_not_depend_on_the_scale_of_the_predictions():
  pred, label = noisy_scores(8, size=60)
  fit = metrics.fit_logistic(pred, label)
  rescaled = metrics.fit_logistic(1000.0 * pred - 50_000.0, label)
  assert fit.kind == rescaled.kind == metrics.FIT_LOGISTIC
  np.testing.assert_allclose(rescaled(1000.0 * pred - 50_000.0), fit(pred), atol=1e-4)


def _demo_like_step_case():
  """The demo's test split in miniature: 16 videos, a collapsed model scoring 89.7 ± 0.05 with no
  ranking, and one video predicted a little lower that happens to have the lowest label."""
  rng = np.random.default_rng(1)
  label = np.clip(rng.normal(60, 20, 16), 5, 99)
  pred = 89.7 + rng.normal(0, 0.05, 16)
  pred[np.argmin(label)] -= 0.15
  return pred, label


def _negatively_correlated_case():
  """Predictions that fall as the labels rise: SRCC −0.33, Pearson −0.26 (as in the issue)."""
  rng = np.random.default_rng(74)
  pred = rng.normal(size=16)
  label = 60 - 5 * pred + rng.normal(0, 20, 16)
  return pred, label


@pytest.mark.parametrize("case", [_demo_like_step_case, _negatively_correlated_case])
def test_fit_cannot_flatter_predictions_that_do_not_rank(case):
  pred, label = case()
  pearson = scipy.stats.pearsonr(pred, label).statistic
  # What the unbounded fit did: a step through one point, or a falling logistic; either turns a
  # model with no (or a backwards) ranking into a high PLCC.
  before = _independent_logistic(
      pred, *_scipy_unbounded_fit(pred, label, [label.max(), label.min(), pred.mean(), 0.5])
  )
  assert scipy.stats.pearsonr(before, label).statistic > abs(pearson) + 0.3

  report = metrics.evaluate(pred, label)
  assert math.isfinite(report.plcc) and math.isfinite(report.rmse)
  assert report.plcc <= abs(pearson) + 0.02
  np.testing.assert_allclose(report.plcc_raw, pearson, rtol=1e-12)
  fit = metrics.fit_logistic(pred, label)
  assert fit.kind == metrics.FIT_LINEAR and fit.reason
  if pearson < 0:
    assert report.plcc == pytest.approx(pearson)  # backwards stays backwards


@pytest.mark.parametrize("seed", range(12))
def test_logistic_stays_increasing_inside_the_label_range_and_never_nan(seed):
  rng = np.random.default_rng(seed)
  size = int(rng.integers(6, 60))
  pred = rng.normal(size=size) * 10.0 ** rng.uniform(-3, 3)
  if seed % 3 == 0:
    pred[: size // 2] = pred[0]  # a tight cluster
  if seed % 4 == 1:
    pred[-1] += 50 * pred.std()  # an outlier
  label = rng.uniform(0, 100) + rng.uniform(1, 50) * (
      np.tanh(pred / pred.std()) + rng.normal(scale=rng.uniform(0.1, 2), size=size)
  )
  report = metrics.evaluate(pred, label)
  assert all(
      math.isfinite(v)
      for v in (report.plcc, report.srcc, report.krcc, report.rmse, report.plcc_raw)
  )
  assert report.plcc <= 1.0
  fit = metrics.fit_logistic(pred, label)
  if fit.kind == metrics.FIT_LOGISTIC:
    top, bottom, _, scale = fit.params
    assert label.min() - 1e-9 <= bottom <= top <= label.max() + 1e-9
    assert scale >= metrics.MIN_SCALE_FRACTION * pred.std() * (1 - 1e-9)
    curve = fit(np.linspace(pred.min() - 100 * pred.std(), pred.max() + 100 * pred.std(), 1001))
    assert np.all(np.diff(curve) >= 0)
    assert label.min() - 1e-9 <= curve.min() and curve.max() <= label.max() + 1e-9


@pytest.mark.parametrize("size", [3, metrics.MIN_LOGISTIC_POINTS - 1])
def test_linear_fallback_when_too_few_points_for_four_parameters(size):
  pred = np.linspace(0.1, 0.7, size) ** 2
  label = 10.0 + 40.0 * pred + np.linspace(0, 3, size) % 2
  fit = metrics.fit_logistic(pred, label)
  assert fit.kind == metrics.FIT_LINEAR and "distinct predictions" in fit.reason
  slope, intercept = np.polyfit(pred, label, 1)
  np.testing.assert_allclose(fit(pred), slope * pred + intercept, rtol=1e-12)
  report = metrics.evaluate(pred, label)
  assert report.fit == metrics.FIT_LINEAR
  np.testing.assert_allclose(report.plcc, report.plcc_raw, rtol=1e-12)  # a line keeps Pearson


@pytest.mark.parametrize("failure", ["raises", "nan_params"])
def test_linear_fallback_when_curve_fit_fails(monkeypatch, failure):
  def failing_curve_fit(*args, **kwargs):
    if failure == "raises":
      raise RuntimeError(
          "Optimal parameters not found: Number of calls to function has reached maxfev"
      )
    return np.full(4, np.nan), np.full((4, 4), np.inf)

  monkeypatch.setattr(scipy.optimize, "curve_fit", failing_curve_fit)
  pred, label = noisy_scores(3)
  fit = metrics.fit_logistic(pred, label)
  assert fit.kind == metrics.FIT_LINEAR
  assert metrics.evaluate(pred, label).fit == metrics.FIT_LINEAR


def test_logistic_that_fits_worse_than_a_line_is_rejected(monkeypatch):
  pred, label = noisy_scores(4)
  # A "converged" logistic (in the fit's parametrisation: bottom, rise, centre, scale on
  # standardised data): a gentle S over a fifth of the label range, worse than the line.
  monkeypatch.setattr(
      scipy.optimize, "curve_fit", lambda *a, **k: (np.array([0.4, 0.2, 0.0, 1.0]), None)
  )
  fit = metrics.fit_logistic(pred, label)
  assert fit.kind == metrics.FIT_LINEAR and "line fits better" in fit.reason


def test_constant_predictions_warn_and_give_nan_correlations():
  label = np.array([10.0, 20.0, 30.0, 45.0])
  with pytest.warns(RuntimeWarning, match="pred constant"):
    report = metrics.evaluate(np.full(4, 0.3), label, name="collapsed")
  assert all(math.isnan(v) for v in (report.plcc, report.srcc, report.krcc, report.plcc_raw))
  assert report.fit == metrics.FIT_CONSTANT
  np.testing.assert_allclose(report.rmse, np.std(label), rtol=1e-12)  # best constant: the mean
  with pytest.warns(RuntimeWarning, match="label constant"):
    metrics.evaluate(np.arange(4.0), np.full(4, 7.0))


@pytest.mark.parametrize(
    "pred, label, message",
    [
        ([1.0, 2.0], [1.0, 2.0], "at least 3"),
        ([1.0, 2.0, 3.0], [1.0, 2.0], "pair up"),
        ([1.0, np.nan, 3.0], [1.0, 2.0, 3.0], "pred holds 1 non-finite"),
        ([1.0, 2.0, 3.0], [1.0, 2.0, np.inf], "label holds 1 non-finite"),
        ([[1.0, 2.0, 3.0]], [1.0, 2.0, 3.0], "pred must be 1-D"),
    ],
)
def test_bad_input_raises_naming_the_problem(pred, label, message):
  with pytest.raises(ValueError, match=message):
    metrics.evaluate(pred, label)


def test_accepts_jax_arrays():
  pred, label = noisy_scores(6)
  from_jax = metrics.evaluate(jnp.asarray(pred, jnp.float32), jnp.asarray(label, jnp.float32))
  from_numpy = metrics.evaluate(pred.astype(np.float32), label.astype(np.float32))
  assert from_jax == from_numpy


def _same_report(a: metrics.QualityReport, b: metrics.QualityReport) -> bool:
  for key, value in a.to_dict().items():
    other = b.to_dict()[key]
    if isinstance(value, float) and math.isnan(value):
      if not math.isnan(other):
        return False
    elif value != other:
      return False
  return True


def test_report_prints_and_round_trips_through_json():
  report = metrics.evaluate(*noisy_scores(2), name="koNViD-1k")
  with pytest.warns(RuntimeWarning):
    collapsed = metrics.evaluate(np.zeros(5), np.arange(5.0), name="collapsed")

  for item in (report, collapsed):
    text = item.to_json()
    json.loads(text)  # strict JSON: NaN is written as null
    assert "NaN" not in text
    restored = metrics.QualityReport.from_json(text)
    assert _same_report(item, restored)
    assert _same_report(item, metrics.QualityReport.from_dict(item.to_dict()))
  assert report == metrics.QualityReport.from_json(report.to_json())

  single = report.table()
  assert "koNViD-1k" in single and f"{report.plcc:.4f}" in single and report.fit in single

  table = metrics.format_table([report, collapsed])
  lines = table.splitlines()
  assert len(lines) == 4  # header, rule, two rows
  assert "collapsed" in lines[3] and "nan" in lines[3]
  # Right-aligned numeric columns end at the same position on every row.
  header = lines[0]
  titles = header.split("  ")
  titles = [title.strip() for title in titles if title.strip()]
  assert titles[titles.index("PLCC") + 1] == "Pearson raw"  # raw Pearson beside PLCC
  for column in ("count", "PLCC", "SRCC", "KRCC", "RMSE", "Pearson raw"):
    end = header.index(column) + len(column)
    for row in lines[2:]:
      assert row[end - 1] != " " and (end == len(row) or row[end] == " "), (column, row)


def test_from_dict_rejects_unknown_and_missing_keys():
  data = metrics.evaluate(*noisy_scores(0)).to_dict()
  with pytest.raises(ValueError, match="unknown key.*'srocc'"):
    metrics.QualityReport.from_dict({**data, "srocc": 0.9})
  del data["rmse"]
  with pytest.raises(ValueError, match="missing key.*'rmse'"):
    metrics.QualityReport.from_dict(data)


# --- calibration: the same bounded fit, so scores stay on the label range ---


def test_calibration_keeps_scores_inside_the_label_range_and_in_order():
  rng = np.random.default_rng(3)
  raw = rng.normal(size=40)
  label = 20 + 70 * scipy.special.expit(raw / 0.6) + rng.normal(scale=3, size=40)
  calibration = calibration_lib.fit_calibration(raw, label)
  assert calibration.fit.kind == metrics.FIT_LOGISTIC
  # Scores far outside the validation range (a new kind of video) stay on the label range ...
  far = np.concatenate([np.linspace(-1e6, 1e6, 2001), raw])
  calibrated = calibration(far)
  assert label.min() <= calibrated.min() and calibrated.max() <= label.max()
  # ... and the order of the raw scores is kept.
  order = np.argsort(far, kind="stable")
  assert np.all(np.diff(calibrated[order]) >= 0)
  # On the validation scores it is the least-squares fit: no worse than the best line, clipped.
  slope, intercept = np.polyfit(raw, label, 1)
  line = np.clip(slope * raw + intercept, label.min(), label.max())
  assert np.sum((calibration(raw) - label) ** 2) <= np.sum((line - label) ** 2)


def test_calibration_with_few_videos_is_a_clipped_line_and_never_reverses():
  raw = np.array([0.1, 0.2, 0.35, 0.5])
  label = np.array([30.0, 42.0, 55.0, 61.0])
  calibration = calibration_lib.fit_calibration(raw, label)
  slope, intercept = np.polyfit(raw, label, 1)
  np.testing.assert_allclose(
      calibration([0.3, 10.0, -10.0]),
      [slope * 0.3 + intercept, label.max(), label.min()],
      rtol=1e-12,
  )
  # Validation scores that fall as the labels rise: no increasing map fits, and a falling one would
  # reverse the model's order; the raw range is laid onto the label range, order kept.
  backwards = calibration_lib.fit_calibration(-raw, label)
  np.testing.assert_allclose(
      backwards(np.array([-0.5, -0.1, -0.3, 5.0, -5.0])),
      [30.0, 61.0, 30.0 + 31.0 * 0.2 / 0.4, 61.0, 30.0],
      rtol=1e-12,
  )
  assert "nothing fitted" in backwards.describe()


def test_calibration_round_trips_through_json_and_reads_legacy_lines():
  raw, label = noisy_scores(10, size=50)
  calibration = calibration_lib.fit_calibration(raw, label)
  saved = json.loads(json.dumps(calibration.to_dict(), allow_nan=False))
  restored = calibration_lib.from_saved(saved)
  grid = np.linspace(-10, 10, 101)
  np.testing.assert_array_equal(restored(grid), calibration(grid))
  assert calibration_lib.from_saved(None) is None
  # A checkpoint written before: [slope, intercept], applied as it was (unclipped).
  legacy = calibration_lib.from_saved([2.0, 5.0])
  np.testing.assert_allclose(legacy(np.array([0.0, 100.0])), [5.0, 205.0])
  assert "2 * raw + 5" in legacy.describe()
  with pytest.raises(ValueError, match=r"lacks \['params'\]"):
    calibration_lib.from_saved({"kind": "logistic"})


# --- fold statistics, against scipy ---


def _fold_data(seed, sources=7, rungs=4):
  rng = np.random.default_rng(seed)
  source = np.repeat([f"src{i}" for i in range(sources)], rungs)
  rung = np.tile(np.arange(rungs), sources)
  label = 30 + 15 * rung + rng.normal(scale=8, size=source.size)
  pred = np.round(label + rng.normal(scale=20, size=source.size), -1)  # ties
  return pred, label, source, rung


@pytest.mark.parametrize("seed", range(3))
def test_within_source_srcc_is_the_mean_of_scipy_per_source(seed):
  pred, label, source, _ = _fold_data(seed)
  # Sources that do not count: one video alone, and one with a constant label.
  pred = np.append(pred, [1.0, 2.0, 3.0])
  label = np.append(label, [50.0, 60.0, 60.0])
  source = np.append(source, ["alone", "flat", "flat"])
  label[source == "flat"] = 60.0
  # A source whose predictions are all equal ranks nothing: it counts as 0.
  pred[source == "src0"] = 4.0
  expected = []
  for name in sorted(set(source) - {"alone", "flat"}):
    rows = source == name
    expected.append(
        0.0 if name == "src0" else scipy.stats.spearmanr(pred[rows], label[rows]).statistic
    )
  assert metrics.within_source_srcc(pred, label, source) == pytest.approx(
      np.mean(expected), abs=1e-12
  )
  assert math.isnan(metrics.within_source_srcc(pred[:3], label[:3], ["a", "b", "c"]))


def test_collapse_check_against_loops():
  pred, label, source, rung = _fold_data(5)
  check = metrics.collapse_check(pred, label, source, rung)
  np.testing.assert_allclose(
      check["spread_ratio"], np.std(pred, ddof=1) / np.std(label, ddof=1), rtol=1e-12
  )
  predicted, labelled = [], []
  for name in sorted(set(source)):
    top = (source == name) & (rung == 3)
    bottom = (source == name) & (rung == 0)
    predicted.append(pred[top].mean() - pred[bottom].mean())
    labelled.append(label[top].mean() - label[bottom].mean())
    assert check["gaps"][name] == pytest.approx((predicted[-1], labelled[-1]))
  assert check["mean_predicted_gap"] == pytest.approx(np.mean(predicted))
  assert check["mean_label_gap"] == pytest.approx(np.mean(labelled))
  assert check["gap_sign_agreement"] == pytest.approx(
      np.mean(np.sign(predicted) == np.sign(labelled))
  )
  assert check["collapsed"] is False
  # The demo's failure: every video scored 89.8 ± 0.01.
  flat = metrics.collapse_check(89.8 + 0.01 * np.sin(np.arange(pred.size)), label, source, rung)
  assert flat["collapsed"] is True and flat["spread_ratio"] < 0.01
  # Spread kept, but nothing separates the rungs within a source: collapsed by the gap rule.
  by_source = np.array([hash(name) % 97 for name in source], float)
  assert metrics.collapse_check(by_source, label, source, rung)["collapsed"] is True
  # Two codecs per rung: the mean of the rung's videos.
  two = metrics.collapse_check(
      [1.0, 3.0, 10.0, 14.0], [20.0, 30.0, 80.0, 90.0], ["a"] * 4, [0, 0, 1, 1]
  )
  assert two["gaps"]["a"] == pytest.approx((10.0, 60.0))


def test_separated_is_the_doctors_test_on_every_wide_source():
  # Labels span 0-100. Sources a-c gain 80-100 from rung 0 to 1 (≥ 30); d gains 10: not tested.
  label = [0.0, 100.0, 10.0, 90.0, 10.0, 90.0, 50.0, 60.0]
  source = ["a", "a", "b", "b", "c", "c", "d", "d"]
  rung = [0, 1] * 4
  # Predicted gaps: a +40 (passes), b +4.5 (below the margin of 5), c −20, d +1.
  pred = [30.0, 70.0, 50.0, 54.5, 60.0, 40.0, 50.0, 51.0]
  check = metrics.collapse_check(pred, label, source, rung)
  assert metrics.SEPARATION_MARGIN * 100 == pytest.approx(5.0)
  assert check["separated"] == pytest.approx(1 / 3)
  pred[3] = 55.5  # b's gap 5.5 now clears the margin
  assert metrics.collapse_check(pred, label, source, rung)["separated"] == pytest.approx(2 / 3)
  # No source spans 30 % of the labels' range: nothing to test.
  narrow = metrics.collapse_check(
      [1.0, 2.0, 3.0, 4.0], [0.0, 20.0, 80.0, 100.0], ["a", "a", "b", "b"], [0, 1, 0, 1]
  )
  assert math.isnan(narrow["separated"])


def test_summarize_folds_matches_scipy_sem_and_skips_nan_folds():
  rng = np.random.default_rng(7)
  folds = [
      {"srcc": float(v), "rmse": float(w)}
      for v, w in zip(rng.uniform(0.6, 0.9, 5), rng.uniform(5, 9, 5))
  ]
  folds[2]["srcc"] = math.nan
  del folds[4]["rmse"]
  summary = metrics.summarize_folds(folds)
  srcc = np.array([fold["srcc"] for fold in folds])
  rmse = np.array([fold.get("rmse", np.nan) for fold in folds])
  for key, values in (("srcc", srcc), ("rmse", rmse)):
    mean, se = summary[key]
    assert mean == pytest.approx(np.nanmean(values), rel=1e-12)
    assert se == pytest.approx(scipy.stats.sem(values, nan_policy="omit"), rel=1e-12)
  single = metrics.summarize_folds([{"srcc": 0.5}, {"srcc": math.nan}])
  assert single["srcc"][0] == 0.5 and math.isnan(single["srcc"][1])
  assert all(math.isnan(v) for v in metrics.summarize_folds([{"srcc": math.nan}])["srcc"])
  with pytest.raises(ValueError, match="fold 1: metric 'fit'"):
    metrics.summarize_folds([{"fit": 1.0}, {"fit": "logistic"}])

  table = metrics.format_fold_table(
      {"model": summary, "bits per pixel": {"srcc": (0.8, 0.01)}}, keys=("srcc", "rmse")
  )
  lines = table.splitlines()
  assert lines[0] == "| method | SRCC | RMSE |" and lines[1].startswith("| --- |")
  mean, se = np.nanmean(srcc), scipy.stats.sem(srcc, nan_policy="omit")
  assert lines[2].startswith(f"| model | {mean:.3f} ± {se:.3f} | ")
  assert lines[3] == "| bits per pixel | 0.800 ± 0.010 | – |"

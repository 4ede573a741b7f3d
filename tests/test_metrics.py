"""Metrics against scipy and independent NumPy loops; logistic fit recovery; report I/O."""

from __future__ import annotations

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.stats

from jaxvqa import metrics

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

  np.testing.assert_allclose(report.plcc_raw, scipy.stats.pearsonr(pred, label).statistic, rtol=1e-10)
  np.testing.assert_allclose(report.plcc_raw, reference_pearson(pred, label), rtol=1e-9)
  np.testing.assert_allclose(report.srcc, scipy.stats.spearmanr(pred, label).statistic, rtol=1e-10)
  np.testing.assert_allclose(
      report.srcc, reference_pearson(reference_average_ranks(pred), reference_average_ranks(label)), rtol=1e-9
  )
  np.testing.assert_allclose(report.krcc, scipy.stats.kendalltau(pred, label).statistic, rtol=1e-10)
  np.testing.assert_allclose(report.krcc, reference_kendall_tau_b(pred, label), rtol=1e-9)

  fit = metrics.fit_logistic(pred, label)
  assert report.fit == fit.kind
  fitted = fit(pred)
  np.testing.assert_allclose(report.plcc, reference_pearson(fitted, label), rtol=1e-9)
  np.testing.assert_allclose(
      report.rmse, math.sqrt(sum((a - b) ** 2 for a, b in zip(fitted, label)) / len(label)), rtol=1e-9
  )
  # The fit is least squares: never worse than the best line through the data.
  slope, intercept = np.polyfit(pred, label, 1)
  line_rmse = math.sqrt(np.mean((slope * pred + intercept - label) ** 2))
  assert report.rmse <= line_rmse * (1 + 1e-6)


def _independent_logistic(x, b1, b2, b3, b4):
  return np.array([b2 + (b1 - b2) / (1 + math.exp(-(v - b3) / abs(b4))) for v in x])


@pytest.mark.parametrize(
    "beta, low, high",
    [
        ((90.0, 20.0, 0.5, 0.1), 0.0, 1.0),
        ((4.5, 1.0, 3.0, 0.8), 0.0, 6.0),
        ((100.0, 0.0, -2.0, 0.5), -5.0, 1.0),
    ],
)
def test_logistic_fit_recovers_known_parameters(beta, low, high):
  rng = np.random.default_rng(0)
  pred = rng.uniform(low, high, size=200)
  label = _independent_logistic(pred, *beta)
  fit = metrics.fit_logistic(pred, label)
  assert fit.kind == metrics.FIT_LOGISTIC
  recovered = np.array(fit.params)
  recovered[3] = abs(recovered[3])
  np.testing.assert_allclose(recovered, beta, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(fit(pred), label, rtol=1e-7, atol=1e-6)
  assert metrics.evaluate(pred, label).plcc > 1 - 1e-10

  noise = 0.01 * (beta[0] - beta[1])
  noisy = metrics.fit_logistic(pred, label + rng.normal(scale=noise, size=pred.size))
  assert noisy.kind in (metrics.FIT_LOGISTIC, metrics.FIT_LOGISTIC_SCALED)
  recovered = np.array(noisy.params)
  recovered[3] = abs(recovered[3])
  np.testing.assert_allclose(recovered[:2], beta[:2], atol=3 * noise)
  np.testing.assert_allclose(recovered[2:], beta[2:], atol=0.1 * (high - low))


@pytest.mark.filterwarnings("ignore::scipy.optimize.OptimizeWarning")
def test_wide_prediction_scale_needs_the_scaled_start():
  rng = np.random.default_rng(1)
  pred = rng.uniform(0, 10_000, size=200)
  beta = (90.0, 20.0, 3000.0, 500.0)
  label = _independent_logistic(pred, *beta)
  # PAPER.md's start alone stalls far from the optimum here (β4 = 0.5 makes a step).
  paper_params, _ = scipy.optimize.curve_fit(
      metrics.logistic, pred, label, p0=[label.max(), label.min(), pred.mean(), 0.5], maxfev=10_000
  )
  assert np.sum((metrics.logistic(pred, *paper_params) - label) ** 2) > 1.0
  fit = metrics.fit_logistic(pred, label)
  assert fit.kind == metrics.FIT_LOGISTIC_SCALED
  recovered = np.array(fit.params)
  recovered[3] = abs(recovered[3])
  np.testing.assert_allclose(recovered, beta, rtol=1e-5)


def test_linear_fallback_when_too_few_points_for_four_parameters():
  pred = np.array([0.1, 0.5, 0.7])
  label = np.array([10.0, 30.0, 35.0])
  fit = metrics.fit_logistic(pred, label)
  assert fit.kind == metrics.FIT_LINEAR
  slope, intercept = np.polyfit(pred, label, 1)
  np.testing.assert_allclose(fit(pred), slope * pred + intercept, rtol=1e-12)
  report = metrics.evaluate(pred, label)
  assert report.fit == metrics.FIT_LINEAR
  np.testing.assert_allclose(report.plcc, report.plcc_raw, rtol=1e-12)  # a line keeps Pearson


@pytest.mark.parametrize("failure", ["raises", "nan_params"])
def test_linear_fallback_when_curve_fit_fails(monkeypatch, failure):
  def failing_curve_fit(*args, **kwargs):
    if failure == "raises":
      raise RuntimeError("Optimal parameters not found: Number of calls to function has reached maxfev")
    return np.full(4, np.nan), np.full((4, 4), np.inf)

  monkeypatch.setattr(scipy.optimize, "curve_fit", failing_curve_fit)
  pred, label = noisy_scores(3)
  fit = metrics.fit_logistic(pred, label)
  assert fit.kind == metrics.FIT_LINEAR
  assert metrics.evaluate(pred, label).fit == metrics.FIT_LINEAR


def test_logistic_that_fits_worse_than_a_line_is_rejected(monkeypatch):
  pred, label = noisy_scores(4)
  # A "converged" flat logistic: finite, but worse than any correlated line.
  monkeypatch.setattr(
      scipy.optimize, "curve_fit", lambda *a, **k: (np.array([label.mean(), label.mean(), 0.0, 1.0]), None)
  )
  assert metrics.fit_logistic(pred, label).kind == metrics.FIT_LINEAR


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
  for column in ("count", "PLCC", "SRCC", "KRCC", "RMSE", "PLCC raw"):
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

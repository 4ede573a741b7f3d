"""What the K-fold protocol reports: each model's held-out metrics on its fold, the bits-per-pixel
line fitted on the same folds, the mean ± standard error over folds and the out-of-fold pool."""

from __future__ import annotations

import fnmatch
from typing import Any

import numpy as np

from jaxvqa import metrics
from jaxvqa.evaluate import calibration
from jaxvqa.data import decoded as decoded_lib
from jaxvqa.kfold.stacked import ModelSpec

BASELINE = "bits-per-pixel line"


def fold_report(
    score: np.ndarray, data: decoded_lib.DecodedSet, train: np.ndarray, test: np.ndarray
) -> dict:
  """Held-out metrics of one model on its `test` encodes.

  SRCC/KRCC on raw scores, PLCC/RMSE after the bounded logistic (jaxvqa.metrics), within-source
  SRCC, and the collapse check on scores calibrated by the fit on the model's own `train`
  predictions: a PLCC-trained score has no scale of its own, so its raw spread says nothing.
  """
  report = metrics.evaluate(score[test], data.label[test]).to_dict()
  calibrated = calibration.fit_calibration(score[train], data.label[train])(score[test])
  collapse = metrics.collapse_check(
      calibrated, data.label[test], data.source[test], data.rung[test]
  )
  return {
      **{key: value for key, value in report.items() if isinstance(value, (int, float))},
      "within_source_srcc": metrics.within_source_srcc(
          score[test], data.label[test], data.source[test]
      ),
      **{
          f"collapse/{key}": value
          for key, value in collapse.items()
          if isinstance(value, (int, float, bool))
      },
  }


def bits_per_pixel_line(data: decoded_lib.DecodedSet, train: np.ndarray) -> np.ndarray:
  """label ≈ a·log(bpp) + b fitted on `train`, for every encode (evaluate.baselines' line)."""
  log_bpp = np.log(data.bits_per_pixel)
  slope, intercept = np.polyfit(log_bpp[train], data.label[train], 1)
  return slope * log_bpp + intercept


def evaluate_folds(
    scores: np.ndarray,
    data: decoded_lib.DecodedSet,
    specs: list[ModelSpec],
    train_sets: list[np.ndarray],
    test_sets: list[np.ndarray],
    num_folds: int,
    subsets: dict[str, str] | None = None,
) -> dict[str, Any]:
  """Per-variant fold reports from `scores` [M, N], their mean ± SE, the bits-per-pixel line on
  the same folds, each variant's out-of-fold predictions pooled over all encodes, and the ship
  model's report on the held-out media.

  `subsets` maps a name to comma-separated fnmatch patterns of family names (`"deb-photo-*,
  skimage-*"`); each adds `subsets[name]`: the same per-fold reports and summary with every fold's
  test encodes restricted to those families (training, calibration and the line's fit unchanged);
  a fold holding fewer than 3 of them is left out of the subset's summary, which names its folds.
  """
  results = _fold_reports(scores, data, specs, train_sets, test_sets, num_folds)
  results["subsets"] = {}
  for name, patterns in (subsets or {}).items():
    keep = family_mask(data, patterns)
    restricted = [np.intersect1d(test, np.flatnonzero(keep)) for test in test_sets]
    # A fold with (almost) none of the subset says nothing about it: left out, and named.
    folds = [fold for fold in range(num_folds) if len(restricted[fold]) >= 3]
    if len(folds) < 2:
      results["subsets"][name] = {"families": patterns, "skipped": "fewer than 2 folds hold it"}
      continue
    subset_specs = [spec for spec in specs if spec.fold in folds]
    subset_scores = scores[[index for index, spec in enumerate(specs) if spec.fold in folds]]
    subset = _fold_reports(
        subset_scores, data, subset_specs, train_sets, restricted, num_folds, folds
    )
    results["subsets"][name] = {
        "families": patterns,
        "folds": folds,
        "num_encodes": int(keep.sum()),
        "num_families": int(len(np.unique(data.family[keep]))),
        "per_fold": subset["per_fold"],
        "summary": subset["summary"],
    }
  return results


def format_tables(results: dict[str, Any]) -> str:
  """The markdown fold table of `evaluate_folds`' results, then one per subset it could report."""
  tables = [metrics.format_fold_table(results["summary"])]
  for name, subset in results["subsets"].items():
    if "summary" in subset:
      tables.append(
          f"Test encodes of {name} only ({subset['families']}; {subset['num_families']} "
          f"families, folds {subset['folds']}):\n" + metrics.format_fold_table(subset["summary"])
      )
  return "\n\n".join(tables)


def family_mask(data: decoded_lib.DecodedSet, patterns: str) -> np.ndarray:
  """Which encodes belong to a family matching one of the comma-separated fnmatch `patterns`."""
  chosen = [p.strip() for p in patterns.split(",") if p.strip()]
  matching = np.array(
      [any(fnmatch.fnmatchcase(name, p) for p in chosen) for name in data.family_names]
  )
  return matching[data.family]


def _fold_reports(
    scores, data, specs, train_sets, test_sets, num_folds, folds=None
) -> dict[str, Any]:
  per_variant: dict[str, list[dict]] = {}
  ship = {}
  for index, spec in enumerate(specs):
    report = fold_report(scores[index], data, train_sets[spec.fold], test_sets[spec.fold])
    if spec.fold == num_folds:
      ship[spec.variant] = report
    else:
      per_variant.setdefault(spec.variant, []).append(report)
  out_of_fold = {}
  for name in per_variant:
    pooled = np.full(len(data), np.nan)
    for index, spec in enumerate(specs):
      if spec.variant == name and spec.fold < num_folds:
        pooled[test_sets[spec.fold]] = scores[index][test_sets[spec.fold]]
    covered = np.isfinite(pooled)  # every encode, or a subset's
    out_of_fold[name] = metrics.evaluate(pooled[covered], data.label[covered]).to_dict()
  per_variant[BASELINE] = [
      fold_report(
          bits_per_pixel_line(data, train_sets[fold]), data, train_sets[fold], test_sets[fold]
      )
      for fold in (range(num_folds) if folds is None else folds)
  ]
  summary = {name: metrics.summarize_folds(reports) for name, reports in per_variant.items()}
  return {
      "per_fold": per_variant,
      "summary": summary,
      "ship_held_out": ship,
      "out_of_fold": out_of_fold,
      "num_encodes": len(data),
      "num_families": len(data.family_names),
      "num_sources": len(data.source_names),
  }

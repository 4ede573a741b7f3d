"""Figures of an evaluation: predicted score against label, with the fitted logistic.

Drawn with matplotlib's object API on an Agg canvas, never through pyplot, so importing or calling
this changes no global backend and needs no display.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxvqa import metrics


def scatter_with_fit(
    pred: np.ndarray, label: np.ndarray, path: str | Path, *, fit: metrics.LogisticFit,
    report: metrics.QualityReport | None = None, title: str = "",
    xlabel: str = "predicted score", ylabel: str = "label", size_inches: tuple[float, float] = (6, 5),
    dpi: int = 100,
) -> Path:
  """Writes a PNG of label [N] against prediction [N] with `fit` drawn over the prediction range.

  The image is size_inches × dpi pixels (600 × 500 by default). `report`, when given, is written
  in a corner (PLCC, SRCC, KRCC, RMSE, count). Returns `path`.
  """
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  pred = np.asarray(pred, np.float64)
  label = np.asarray(label, np.float64)
  figure = Figure(figsize=size_inches, dpi=dpi)
  FigureCanvasAgg(figure)
  axes = figure.add_subplot()
  axes.scatter(pred, label, s=18, alpha=0.75, color="tab:blue", edgecolors="none", label="videos")
  if pred.size:
    low, high = float(pred.min()), float(pred.max())
    margin = 0.05 * (high - low) if high > low else 1.0
    curve_x = np.linspace(low - margin, high + margin, 200)
    axes.plot(curve_x, fit(curve_x), color="tab:red", linewidth=1.5, label=f"{fit.kind} fit")
  if report is not None:
    summary = (f"PLCC {report.plcc:.4f}\nSRCC {report.srcc:.4f}\nKRCC {report.krcc:.4f}\n"
               f"RMSE {report.rmse:.4g}\nN = {report.count}")
    axes.text(0.03, 0.97, summary, transform=axes.transAxes, va="top", ha="left",
              family="monospace", fontsize=9,
              bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8})
  axes.set_xlabel(xlabel)
  axes.set_ylabel(ylabel)
  if title:
    axes.set_title(title, fontsize=10)
  axes.grid(True, alpha=0.3)
  axes.legend(loc="lower right", fontsize=9)
  figure.tight_layout()
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  figure.savefig(path, format="png")
  return path

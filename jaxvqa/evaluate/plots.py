"""Figures of an evaluation: predicted score against label, and score against bitrate per source.

Both are drawn over the labels' range, so a wild fit or a stray prediction cannot squash the
points into one row: a prediction outside that range is drawn on the edge, hollow. Built with
matplotlib's object API on an Agg canvas, never through pyplot, so importing or calling this
changes no global backend and needs no display. The builders return the `Figure` (tests read its
axes; checkpoint_report saves it and hands it to TensorBoard).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxvqa import metrics

# One marker per source, in order of first appearance; beyond these they repeat.
_SOURCE_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "h", "p")
# Sources named one by one in the legend; more are summarised by their count.
_MAX_LEGEND_SOURCES = 12
# Right of the axes: inside, it hides the points of the corner it is put in.
_LEGEND_OUTSIDE = {
    "loc": "upper left",
    "bbox_to_anchor": (1.02, 1.0),
    "fontsize": 7,
    "framealpha": 0.8,
    "borderaxespad": 0.0,
}


def _new_figure(size_inches: tuple[float, float], dpi: int):
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  figure = Figure(figsize=size_inches, dpi=dpi)
  FigureCanvasAgg(figure)
  return figure


def _label_range(label: np.ndarray, label_range: tuple[float, float] | None) -> tuple[float, float]:
  if label_range is not None:
    low, high = (float(v) for v in label_range)
  else:
    low, high = float(label.min()), float(label.max())
  if not high > low:
    raise ValueError(
        f"label range ({low}, {high}) is empty; pass label_range=(low, high) with low < high"
    )
  return low, high


def _first_seen(values: Sequence[Any]) -> list[Any]:
  return list(dict.fromkeys(values))


def scatter_figure(
    pred: np.ndarray,
    label: np.ndarray,
    *,
    fit: metrics.LogisticFit | None = None,
    report: metrics.QualityReport | None = None,
    rungs: Sequence[int] | None = None,
    sources: Sequence[str] | None = None,
    label_range: tuple[float, float] | None = None,
    title: str = "",
    xlabel: str = "predicted score",
    ylabel: str = "label",
    size_inches: tuple[float, float] = (7, 5),
    dpi: int = 100,
):
  """Label [N] against label-scale prediction [N], both axes over the label range, identity line.

  Args:
    pred, label: [N] scores on the label's scale.
    fit: drawn as a curve when given (e.g. the metrics' logistic).
    report: its PLCC, raw Pearson, SRCC, KRCC, RMSE, count and fit go in a corner.
    rungs: [N] bitrate rung per video: points are coloured by it.
    sources: [N] source per video: points are marked by it (legend).
    label_range: axes limits, default (min label, max label).

  Returns:
    The matplotlib Figure; its single axes have x and y limits equal to the label range.
  """
  from matplotlib import colormaps

  pred = np.asarray(pred, np.float64)
  label = np.asarray(label, np.float64)
  low, high = _label_range(label, label_range)
  figure = _new_figure(size_inches, dpi)
  axes = figure.add_subplot()
  axes.plot([low, high], [low, high], color="0.4", linewidth=1, linestyle=":", label="identity")

  shown = np.clip(pred, low, high)
  outside = shown != pred
  rung_values = sorted(set(int(r) for r in rungs)) if rungs is not None else [None]
  colours = colormaps["viridis"](np.linspace(0.0, 0.9, len(rung_values)))
  colour_of = dict(zip(rung_values, colours))
  source_values = _first_seen(sources) if sources is not None else [None]
  marker_of = {s: _SOURCE_MARKERS[i % len(_SOURCE_MARKERS)] for i, s in enumerate(source_values)}
  for source in source_values:
    for rung in rung_values:
      chosen = np.ones(pred.size, bool)
      if sources is not None:
        chosen &= np.asarray([s == source for s in sources])
      if rungs is not None:
        chosen &= np.asarray(rungs) == rung
      for hollow in (False, True):
        points = chosen & (outside == hollow)
        if points.any():
          colour = colour_of[rung]
          # clip_on=False: points on the limits are drawn whole.
          axes.scatter(
              shown[points],
              label[points],
              s=30,
              marker=marker_of[source],
              clip_on=False,
              facecolors="none" if hollow else colour,
              edgecolors=colour,
              linewidths=1.2,
              alpha=0.85,
              zorder=3,
          )

  if fit is not None:
    curve_x = np.linspace(low, high, 200)
    curve_y = fit(curve_x)
    inside = (curve_y >= low) & (curve_y <= high)
    axes.plot(
        curve_x[inside], curve_y[inside], color="tab:red", linewidth=1.2, label=f"{fit.kind} fit"
    )
  axes.set_xlim(low, high)
  axes.set_ylim(low, high)
  axes.set_aspect("equal", adjustable="box")
  _legend(
      axes,
      rung_values if rungs is not None else None,
      colour_of,
      source_values if sources is not None else None,
      marker_of,
      int(outside.sum()),
  )
  if report is not None:
    summary = (
        f"PLCC {report.plcc:.4f} ({report.fit})\nPearson {report.plcc_raw:.4f}\n"
        f"SRCC {report.srcc:.4f}\nKRCC {report.krcc:.4f}\nRMSE {report.rmse:.4g}\n"
        f"N = {report.count}"
    )
    axes.text(
        0.03,
        0.97,
        summary,
        transform=axes.transAxes,
        va="top",
        ha="left",
        family="monospace",
        fontsize=8,
        bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8},
    )
  axes.set_xlabel(xlabel)
  axes.set_ylabel(ylabel)
  if title:
    axes.set_title(title, fontsize=9)
  axes.grid(True, alpha=0.3)
  figure.tight_layout()
  return figure


def _legend(axes, rungs, colour_of, sources, marker_of, num_outside: int) -> None:
  from matplotlib.lines import Line2D

  handles = [Line2D([], [], color="0.4", linestyle=":", label="identity")]
  handles += [line for line in axes.get_lines() if line.get_label().endswith(" fit")]
  if rungs is not None:
    handles += [
        Line2D([], [], linestyle="none", marker="o", color=colour_of[r], label=f"rung {r}")
        for r in rungs
    ]
  if sources is not None:
    named = sources[:_MAX_LEGEND_SOURCES]
    handles += [
        Line2D([], [], linestyle="none", marker=marker_of[s], color="0.3", label=str(s))
        for s in named
    ]
    if len(sources) > len(named):
      handles.append(
          Line2D([], [], linestyle="none", label=f"… {len(sources) - len(named)} more sources")
      )
  if num_outside:
    handles.append(
        Line2D(
            [],
            [],
            linestyle="none",
            marker="o",
            markerfacecolor="none",
            color="0.3",
            label=f"{num_outside} outside the range, on the edge",
        )
    )
  axes.legend(handles=handles, **_LEGEND_OUTSIDE)


# Its signature (declarative) is alike in shape to the scatter figure's above: axes, labels, size.
def rate_quality_figure(
    bitrate_kbps: np.ndarray,
    pred: np.ndarray,
    label: np.ndarray,
    sources: Sequence[str],
    *,
    label_range: tuple[float, float] | None = None,
    label_name: str = "VMAF",
    title: str = "",
    ylabel: str = "score",
    size_inches: tuple[float, float] = (8, 5),
    dpi: int = 100,
):
  """Predicted score (solid) and label (dashed) against achieved bitrate, one colour per source.

  Args:
    bitrate_kbps: [N] achieved bitrate of each encode (log x axis).
    pred, label: [N] scores on the label's scale.
    sources: [N] source of each encode: one pair of lines per source.
    label_range: y limits, default (min label, max label); predictions beyond are drawn on the
      edge, hollow.

  Returns:
    The matplotlib Figure; its axes have y limits equal to the label range.
  """
  from matplotlib import colormaps, ticker
  from matplotlib.lines import Line2D

  bitrate = np.asarray(bitrate_kbps, np.float64)
  pred = np.asarray(pred, np.float64)
  label = np.asarray(label, np.float64)
  if not np.all(bitrate > 0):
    raise ValueError(
        "bitrate_kbps must be positive for a log axis; "
        f"got {int(np.sum(~(bitrate > 0)))} value(s) <= 0 or NaN"
    )
  low, high = _label_range(label, label_range)
  figure = _new_figure(size_inches, dpi)
  axes = figure.add_subplot()
  source_values = _first_seen(sources)
  palette = colormaps["tab20" if len(source_values) > 10 else "tab10"]
  source_array = np.asarray([str(s) for s in sources])
  for i, source in enumerate(source_values):
    colour = palette(i % palette.N)
    rows = np.flatnonzero(source_array == str(source))
    rows = rows[np.argsort(bitrate[rows], kind="stable")]
    shown = np.clip(pred[rows], low, high)
    axes.plot(
        bitrate[rows],
        shown,
        color=colour,
        linewidth=1.5,
        marker="o",
        markersize=4,
        label=str(source) if i < _MAX_LEGEND_SOURCES else None,
    )
    outside = shown != pred[rows]
    if outside.any():
      axes.scatter(
          bitrate[rows][outside],
          shown[outside],
          s=40,
          facecolors="white",
          edgecolors=colour,
          zorder=3,
          clip_on=False,
      )
    axes.plot(
        bitrate[rows],
        label[rows],
        color=colour,
        linewidth=1.2,
        linestyle="--",
        marker="x",
        markersize=4,
    )
  axes.set_xscale("log")
  axes.set_ylim(low, high)
  handles = [
      Line2D([], [], color="0.3", linestyle="-", label="predicted"),
      Line2D([], [], color="0.3", linestyle="--", label=label_name),
  ]
  handles += [line for line in axes.get_lines() if not line.get_label().startswith("_")]
  if len(source_values) > _MAX_LEGEND_SOURCES:
    handles.append(
        Line2D(
            [],
            [],
            linestyle="none",
            label=f"… {len(source_values) - _MAX_LEGEND_SOURCES} more sources",
        )
    )
  axes.legend(handles=handles, **_LEGEND_OUTSIDE)
  # Plain numbers (30, 60, 120), not 3×10^1, on the log axis.
  plain = ticker.FuncFormatter(lambda value, _: f"{value:g}")
  axes.xaxis.set_major_formatter(plain)
  axes.xaxis.set_minor_formatter(plain)
  axes.set_xlabel("achieved bitrate (kbit/s, log scale)")
  axes.set_ylabel(ylabel)
  if title:
    axes.set_title(title, fontsize=9)
  axes.grid(True, which="both", alpha=0.3)
  figure.tight_layout()
  return figure


def figure_rgb(figure) -> np.ndarray:
  """uint8 [H, W, 3] pixels of `figure` (for TensorBoard)."""
  figure.canvas.draw()
  return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def save_png(figure, path: str | Path) -> Path:
  """Writes `figure` as a PNG at `path` (parents made); returns the path."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  figure.savefig(path, format="png")
  return path

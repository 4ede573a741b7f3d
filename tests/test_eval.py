"""eval.py: metrics that agree with `jaxvqa score` on the same files, the JSON, the plot."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from jaxvqa import cli, metrics
from jaxvqa.evaluate import checkpoint_report, plots
from jaxvqa.serve import inference

REPO = Path(__file__).resolve().parents[1]


def manifest_labels(workdir: Path) -> dict[str, float]:
  """Absolute encode path → VMAF label, read from the run's make-dataset manifest (not from TFDS).

  The labels are rounded to float32, as the data set stores them.
  """
  from jaxvqa.data import demo

  config = inference.load_run_config(workdir)
  manual_dir = demo.ensure_demo_set(config.data.demo, demo.cache_dir(config.data.cache_dir))
  labels = {}
  for line in (manual_dir / "manifest.jsonl").read_text().splitlines():
    record = json.loads(line)
    labels[str(manual_dir / record["path"])] = float(np.float32(record["vmaf"]))
  return labels


def apply_saved_calibration(saved: dict, raw: float) -> float:
  """The calibration as written in the JSON, applied by hand: the fit, then the label range."""
  kind, params = saved["kind"], saved["params"]
  if kind == "logistic":
    top, bottom, centre, scale = params
    value = bottom + (top - bottom) / (1 + math.exp(-(raw - centre) / scale))
  elif kind == "linear":
    value = params[0] * raw + params[1]
  else:
    value = params[0]
  if saved["label_range"] is not None:
    low, high = saved["label_range"]
    value = min(max(value, low), high)
  return value


@pytest.fixture(scope="module")
def evaluated_workdir(trained_workdir, tmp_path_factory):
  """A copy of the session's trained run for eval.py, which writes into the run's TensorBoard
  directory (the session's run is shared by the test workers, read-only)."""
  return shutil.copytree(trained_workdir, tmp_path_factory.mktemp("evaluated") / "run")


@pytest.fixture(scope="module")
def eval_output(evaluated_workdir, tmp_path_factory):
  """eval.py run as a user runs it, on the test split; (completed process, JSON document, out dir)."""
  out = tmp_path_factory.mktemp("eval")
  completed = subprocess.run(
      [
          sys.executable,
          "eval.py",
          "--workdir",
          str(evaluated_workdir),
          "--split",
          "test",
          "--out",
          str(out),
          "--config.data.num_workers=0",
      ],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert completed.returncode == 0, completed.stderr[-3000:]
  document = json.loads((out / "test_best_ema.json").read_text())
  return completed, document, out


@pytest.mark.slow
def test_eval_metrics_equal_metrics_of_jaxvqa_score_on_the_same_files(
    eval_output, trained_workdir, tmp_path, capsys
):
  completed, document, _ = eval_output
  paths = [video["path"] for video in document["videos"]]
  assert document["metrics"]["count"] == len(paths) >= 3
  scores_csv = tmp_path / "scores.csv"
  assert (
      cli.main(
          [
              "score",
              "--workdir",
              str(trained_workdir),
              "--format",
              "csv",
              "--no-progress",
              "--output",
              str(scores_csv),
              *paths,
          ]
      )
      == 0
  )
  capsys.readouterr()
  rows = {row["path"]: row for row in csv.DictReader(io.StringIO(scores_csv.read_text()))}
  score = np.array([float(rows[path]["score"]) for path in paths])
  labels = manifest_labels(trained_workdir)
  label = np.array([labels[path] for path in paths])

  # Every video's score is the one jaxvqa score gives for its file, bit for bit ...
  np.testing.assert_array_equal(score, [video["score"] for video in document["videos"]])
  np.testing.assert_array_equal(label, [video["label"] for video in document["videos"]])
  # ... so the metrics are those computed by hand from jaxvqa score's output.
  reported = document["metrics"]
  assert reported["srcc"] == pytest.approx(scipy.stats.spearmanr(score, label).statistic, abs=1e-12)
  assert reported["krcc"] == pytest.approx(
      scipy.stats.kendalltau(score, label).statistic, abs=1e-12
  )
  assert reported["plcc_raw"] == pytest.approx(
      scipy.stats.pearsonr(score, label).statistic, abs=1e-12
  )
  by_hand = metrics.evaluate(score, label)
  for field in ("plcc", "rmse"):
    assert reported[field] == pytest.approx(getattr(by_hand, field), abs=1e-9)
  assert document["fit"]["kind"] == by_hand.fit
  # The calibration is the checkpoint's, and the printed table holds the same numbers.
  np.testing.assert_allclose(
      score,
      [
          apply_saved_calibration(document["calibration"], video["raw_score"])
          for video in document["videos"]
      ],
      rtol=1e-12,
  )
  table = completed.stdout
  assert (
      "SRCC" in table and f"{reported['srcc']:.4f}" in table and f"{reported['rmse']:.4f}" in table
  )
  assert "Pearson raw" in table and f"{reported['plcc_raw']:.4f}" in table
  assert "step 2, best, ema weights" in table


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_eval_writes_both_plots_and_the_tensorboard_images(eval_output, evaluated_workdir):
  import matplotlib.image

  completed, document, out = eval_output
  scatter, rate = out / "test_best_ema.png", out / "test_best_ema_rate.png"
  assert f"{scatter}" in completed.stdout and f"{rate}" in completed.stdout
  for path, size in ((scatter, (500, 700)), (rate, (500, 800))):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.shape[:2] == size  # inches × 100 dpi
    pixels = image[..., :3]
    # Coloured points and lines are drawn, not only axes (black on white).
    assert ((pixels.max(axis=-1) - pixels.min(axis=-1)) > 0.3).sum() > 200, path
  # Every video carries what the plots are drawn by.
  for video in document["videos"]:
    assert isinstance(video["source"], str) and isinstance(video["rung"], int)
    assert video["bitrate_kbps"] > 0

  # The run's TensorBoard directory receives the same figures as images.
  images = {
      (value.tag, event.step): value.image
      for event in tensorboard_events(evaluated_workdir / "tensorboard")
      for value in event.summary.value
      if value.HasField("image")
  }
  assert {("eval/test_best_ema/scatter", 2), ("eval/test_best_ema/rate", 2)} <= set(images), images
  image = images["eval/test_best_ema/scatter", 2]
  assert (image.width, image.height) == (700, 500)
  assert image.encoded_image_string[:8] == PNG_SIGNATURE


def tensorboard_events(directory: Path):
  """Every Event in the TFRecord event files under `directory` (record: u64 length, u32 CRC,
  payload, u32 CRC), read without TensorFlow or TensorBoard installed."""
  from tensorboardX.proto import event_pb2

  for path in sorted(directory.glob("events.out.tfevents.*")):
    data = path.read_bytes()
    offset = 0
    while offset + 12 <= len(data):
      (length,) = struct.unpack("<Q", data[offset : offset + 8])
      yield event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
      offset += 12 + length + 4


def _ladder(seed=0, sources=("bus", "park", "foreman"), rungs=4):
  rng = np.random.default_rng(seed)
  source = np.repeat(sources, rungs)
  rung = np.tile(np.arange(rungs), len(sources))
  bitrate = 25.0 * 2.0**rung * rng.uniform(0.9, 1.1, size=source.size)
  label = np.clip(30 + 18 * rung + rng.normal(scale=4, size=source.size), 0, 100)
  pred = label + rng.normal(scale=8, size=source.size)
  return source, rung, bitrate, label, pred


def test_scatter_is_drawn_over_the_label_range_with_identity_rungs_and_sources(tmp_path):
  from matplotlib.colors import to_hex

  source, rung, _, label, pred = _ladder()
  pred[0] = -1100.0  # what an unbounded fit once made of a score: it must not stretch the axes
  report = metrics.evaluate(pred, label)
  figure = plots.scatter_figure(
      pred, label, fit=metrics.fit_logistic(pred, label), report=report, rungs=rung, sources=source
  )
  (axes,) = figure.axes
  assert axes.get_xlim() == axes.get_ylim() == (label.min(), label.max())
  identity = [line for line in axes.get_lines() if line.get_label() == "identity"]
  assert len(identity) == 1
  np.testing.assert_allclose(identity[0].get_xydata(), [[label.min()] * 2, [label.max()] * 2])
  # One colour per rung, one marker per source, all named in the legend.
  legend = [text.get_text() for text in axes.get_legend().get_texts()]
  assert {f"rung {r}" for r in range(4)} | {"bus", "park", "foreman"} <= set(legend)
  outside = int(np.sum((pred < label.min()) | (pred > label.max())))
  assert outside >= 1 and f"{outside} outside the range, on the edge" in legend
  edge_colours = {}
  for collection in axes.collections:
    xy = collection.get_offsets()
    for x, y in np.asarray(xy):
      index = int(
          np.argmin(np.abs(label - y) + np.abs(np.clip(pred, label.min(), label.max()) - x))
      )
      edge_colours.setdefault(int(rung[index]), set()).add(to_hex(collection.get_edgecolor()[0]))
  assert len(edge_colours) == 4 and all(len(c) == 1 for c in edge_colours.values())
  assert len(set.union(*edge_colours.values())) == 4
  path = plots.save_png(figure, tmp_path / "deep" / "scatter.png")
  assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_rate_plot_has_one_solid_and_one_dashed_line_per_source_on_a_log_axis(tmp_path):
  source, _, bitrate, label, pred = _ladder(1)
  figure = plots.rate_quality_figure(bitrate, pred, label, source, label_range=(0.0, 100.0))
  (axes,) = figure.axes
  assert axes.get_xscale() == "log" and axes.get_ylim() == (0.0, 100.0)
  lines = [line for line in axes.get_lines() if len(line.get_xdata()) == 4]
  assert sorted(line.get_linestyle() for line in lines) == ["-"] * 3 + ["--"] * 3
  for name in ("bus", "park", "foreman"):
    rows = np.flatnonzero(source == name)
    rows = rows[np.argsort(bitrate[rows])]
    solid = [line for line in lines if line.get_label() == name]
    assert len(solid) == 1
    np.testing.assert_allclose(solid[0].get_xdata(), bitrate[rows])
    np.testing.assert_allclose(solid[0].get_ydata(), np.clip(pred[rows], 0, 100))
    dashed = [
        line
        for line in lines
        if line.get_linestyle() == "--" and line.get_color() == solid[0].get_color()
    ]
    assert len(dashed) == 1
    np.testing.assert_allclose(dashed[0].get_ydata(), label[rows])
  assert plots.save_png(figure, tmp_path / "rate.png").read_bytes()[:8] == PNG_SIGNATURE
  with pytest.raises(ValueError, match="bitrate_kbps must be positive"):
    plots.rate_quality_figure(np.zeros(12), pred, label, source)


def test_only_data_fields_can_be_overridden(trained_workdir):
  config = inference.load_run_config(trained_workdir)
  checkpoint_report.apply_overrides(
      config, {"data.manual_dir": "/elsewhere", "data.eval_batch_size": 4}
  )
  assert config.data.manual_dir == "/elsewhere" and config.data.eval_batch_size == 4
  with pytest.raises(ValueError, match="only data fields"):
    checkpoint_report.apply_overrides(config, {"model.dtype": "bfloat16"})
  with pytest.raises(ValueError, match="no such field"):
    checkpoint_report.apply_overrides(config, {"data.smapling": "fragments"})

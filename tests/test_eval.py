"""eval.py: metrics that agree with `jaxvqa score` on the same files, the JSON, the plot."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from jaxvqa import cli, eval_run, inference, metrics

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


@pytest.fixture(scope="module")
def eval_output(trained_workdir, tmp_path_factory):
  """eval.py run as a user runs it, on the test split; (completed process, JSON document, out dir)."""
  out = tmp_path_factory.mktemp("eval")
  completed = subprocess.run(
      [sys.executable, "eval.py", "--workdir", str(trained_workdir), "--split", "test",
       "--out", str(out), "--config.data.num_workers=0"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert completed.returncode == 0, completed.stderr[-3000:]
  document = json.loads((out / "test_best_ema.json").read_text())
  return completed, document, out


def test_eval_metrics_equal_metrics_of_jaxvqa_score_on_the_same_files(
    eval_output, trained_workdir, tmp_path, capsys):
  completed, document, _ = eval_output
  paths = [video["path"] for video in document["videos"]]
  assert document["metrics"]["count"] == len(paths) >= 3
  scores_csv = tmp_path / "scores.csv"
  assert cli.main(["score", "--workdir", str(trained_workdir), "--format", "csv", "--no-progress",
                   "--output", str(scores_csv), *paths]) == 0
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
  assert reported["krcc"] == pytest.approx(scipy.stats.kendalltau(score, label).statistic, abs=1e-12)
  assert reported["plcc_raw"] == pytest.approx(scipy.stats.pearsonr(score, label).statistic,
                                               abs=1e-12)
  by_hand = metrics.evaluate(score, label)
  for field in ("plcc", "rmse"):
    assert reported[field] == pytest.approx(getattr(by_hand, field), abs=1e-9)
  assert document["fit"]["kind"] == by_hand.fit
  # The calibration is the checkpoint's, and the printed table holds the same numbers.
  slope, intercept = document["calibration"]
  np.testing.assert_allclose(
      score, [slope * video["raw_score"] + intercept for video in document["videos"]], rtol=1e-12)
  table = completed.stdout
  assert "SRCC" in table and f"{reported['srcc']:.4f}" in table and f"{reported['rmse']:.4f}" in table
  assert "step 2, best, ema weights" in table


def test_eval_writes_a_scatter_plot(eval_output):
  import matplotlib.image

  _, document, out = eval_output
  image = matplotlib.image.imread(out / "test_best_ema.png")
  assert image.shape[:2] == (500, 600)  # 6 × 5 inches at 100 dpi
  pixels = image[..., :3]
  assert pixels.std() > 0.05, "blank image"
  # Points (blue) and the fitted curve (red) are drawn, not only axes (black on white).
  coloured = (pixels.max(axis=-1) - pixels.min(axis=-1)) > 0.3
  assert coloured.sum() > 200


def test_only_data_fields_can_be_overridden(trained_workdir):
  config = inference.load_run_config(trained_workdir)
  eval_run.apply_overrides(config, {"data.manual_dir": "/elsewhere", "data.eval_batch_size": 4})
  assert config.data.manual_dir == "/elsewhere" and config.data.eval_batch_size == 4
  with pytest.raises(ValueError, match="only data fields"):
    eval_run.apply_overrides(config, {"model.dtype": "bfloat16"})
  with pytest.raises(ValueError, match="no such field"):
    eval_run.apply_overrides(config, {"data.smapling": "fragments"})


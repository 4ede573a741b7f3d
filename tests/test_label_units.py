"""Scores in the data set's own units: the map between the stored label and the published score,
calibrations composed with it (DMOS decreasing), and a fake KoNViD-1k run whose test metrics,
eval.py JSON and plots, `jaxvqa score` rows and `jaxvqa.load().score` are all MOS on 1-5."""

from __future__ import annotations

import csv
import io
import json

import jax.numpy as jnp
import media
import numpy as np
import pytest
import scipy.stats
from conftest import run_cli, tiny_demo_settings

import jaxvqa
from jaxvqa import metrics
from jaxvqa.data import label_scale
from jaxvqa.evaluate import calibration, checkpoint_report, plots
from jaxvqa.serve import api
from jaxvqa.train import trainer

KONVID = label_scale.PUBLISHED["konvid_1k"]
LIVE_IQA = label_scale.PUBLISHED["live_iqa"]


def test_the_label_and_the_published_score_map_onto_each_other_in_both_directions():
  mos = np.array([3.42, 2.1, 4.64, 1.22])
  scale = KONVID.anchored(mos)
  label = scale.to_label(mos)
  np.testing.assert_allclose(label, (mos - 1.22) / (4.64 - 1.22), rtol=1e-6)
  np.testing.assert_allclose(scale.to_units(label), mos, rtol=1e-6)
  assert scale.span() == (1.22, 4.64) and scale.describe() == "MOS (1-5)"

  dmos = np.array([10.0, 75.5, 40.0])
  scale = LIVE_IQA.anchored(dmos)
  np.testing.assert_allclose(scale.to_label(dmos), [1.0, 0.0, 35.5 / 65.5], rtol=1e-6)
  np.testing.assert_allclose(scale.to_units(scale.to_label(dmos)), dmos, rtol=1e-6)
  assert scale.describe() == "DMOS (0-100, lower is better)"
  assert label_scale.PUBLISHED["kadid_10k"].describe() == "DMOS (1-5, higher is better)"
  assert label_scale.LabelScale.from_dict(json.loads(json.dumps(scale.to_dict()))) == scale
  # VMAF is stored as measured.
  assert label_scale.VMAF.to_units(np.array([42.5]))[0] == 42.5 and label_scale.VMAF.span() is None


@pytest.mark.parametrize("published", [KONVID, LIVE_IQA])
@pytest.mark.parametrize("kind", ["logistic", "linear", "constant"])
def test_a_calibration_in_units_is_the_stored_label_calibration_followed_by_the_scale(
    published, kind
):
  rng = np.random.default_rng(0)
  raw = rng.normal(size=40)
  scale = published.anchored([1.3, 4.7] if published is KONVID else [3.0, 91.0])
  fitted = {
      "logistic": metrics.LogisticFit("logistic", (0.9, 0.1, 0.2, 0.5)),
      "linear": metrics.LogisticFit("linear", (0.3, 0.5)),
      "constant": metrics.LogisticFit("constant", (0.4,)),
  }[kind]
  on_label = calibration.Calibration(fitted, 0.15, 0.85)
  in_units = calibration.from_saved(json.loads(json.dumps(on_label.in_units(scale).to_dict())))
  expected = scale.to_units(on_label(raw))
  np.testing.assert_allclose(in_units(raw), expected, rtol=1e-12)
  # The JAX path (api.calibrate_jax: quality_fn, export) reads the same numbers.
  np.testing.assert_allclose(
      np.asarray(api.calibrate_jax(jnp.asarray(raw, jnp.float32), in_units)), expected, rtol=2e-5
  )
  assert in_units.units == scale and in_units.describe().endswith(f"in {scale.describe()}")
  if kind != "constant":  # DMOS: the better the video, the lower its calibrated score
    order = np.argsort(raw)
    assert np.all(np.diff(in_units(raw)[order]) * scale.sign >= 0)
    assert np.ptp(in_units(raw)) > 0


def test_a_dmos_set_is_reported_in_dmos_with_correlations_against_quality():
  rng = np.random.default_rng(1)
  dmos = rng.uniform(5, 80, size=5)
  raw = -dmos + rng.normal(0, 5, size=5)  # the model's output rises with quality
  report = label_scale.evaluate(raw, dmos, LIVE_IQA, calibrated=False)
  assert report.srcc == pytest.approx(scipy.stats.spearmanr(raw, -dmos).statistic)
  assert report.srcc > 0 and report.fit == "linear"  # 5 points: the least-squares line
  slope, intercept = np.polyfit(raw, dmos, 1)
  assert report.rmse == pytest.approx(np.sqrt(np.mean((slope * raw + intercept - dmos) ** 2)))


# ------------------------------------------------------------------ a fake KoNViD-1k run ---


@pytest.fixture(scope="module")
def konvid_run(tmp_path_factory):
  """16 short clips laid out as KoNViD-1k's release, MOS spread over 1.1-4.9, trained by
  train.py's path (train_and_evaluate) with the tests' tiny model: (workdir, {path: MOS},
  printed output)."""
  from configs import demo as demo_config

  root = tmp_path_factory.mktemp("konvid")
  manual = root / "KoNViD_1k"
  (manual / "KoNViD_1k_videos").mkdir(parents=True)
  ids = [str(4_000_000_000 + 7919 * k) for k in range(16)]
  mos = np.round(np.linspace(1.1, 4.9, len(ids))[np.random.default_rng(2).permutation(16)], 2)
  for k, flickr_id in enumerate(ids):
    media.make_clip(
        manual / "KoNViD_1k_videos" / f"{flickr_id}.mp4",
        source=("bikes", "carphone_pristine")[k % 2],
        size=(48, 32),
        frames=4,
        start_frame=7 * k,
    )
  with open(manual / "KoNViD_1k_mos.csv", "w", newline="") as handle:
    writer = csv.writer(handle)
    writer.writerow(["flickr_id", "mos"])
    writer.writerows(zip(ids, mos))

  config = tiny_demo_settings(demo_config.get_config("scratch"))
  config.data.demo.enabled = False
  config.data.update(
      builder="konvid_1k",
      manual_dir=str(manual),
      cache_dir=str(root / "cache"),
      train_fraction=0.5,
      validation_fraction=0.25,
      num_workers=0,
      grouping="mos_quantile",  # a MOS set has no bitrate groups for the coarse stage
      quality_levels=4,  # 8 training clips: 4 levels of 2, one batch of 4 groups
  )
  workdir = root / "run"
  config.workdir = str(workdir)
  printed = io.StringIO()
  import contextlib

  with contextlib.redirect_stdout(printed):
    trainer.train_and_evaluate(config, workdir, num_devices=1)
  published = {
      str(manual / "KoNViD_1k_videos" / f"{i}.mp4"): float(np.float32(m)) for i, m in zip(ids, mos)
  }
  return workdir, published, printed.getvalue()


def _in_mos_range(values):
  values = np.asarray(values, np.float64)
  return bool(np.all((values >= 1) & (values <= 5)) and np.any(values > 1))


@pytest.mark.slow
def test_a_konvid_run_reports_scores_plots_and_rmse_in_mos_1_to_5(
    konvid_run, tmp_path, monkeypatch
):
  workdir, published, printed = konvid_run
  assert "in MOS (1-5)" in printed
  figures = []
  save_png = plots.save_png
  monkeypatch.setattr(
      plots, "save_png", lambda figure, path: figures.append(figure) or save_png(figure, path)
  )
  result = checkpoint_report.evaluate_checkpoint(workdir, split="test", out_dir=tmp_path)
  videos = result.videos
  assert len(videos) == 4 and result.label_scale.describe() == "MOS (1-5)"

  # Labels are the published MOS of each file (float32 as stored), scores are MOS too.
  label = np.array([video["label"] for video in videos])
  score = np.array([video["score"] for video in videos])
  np.testing.assert_allclose(label, [published[video["path"]] for video in videos], rtol=1e-6)
  assert _in_mos_range(label) and _in_mos_range(score)
  assert not np.all((score >= 0) & (score <= 1))
  calibration_saved = json.loads(result.json_path.read_text())["calibration"]
  assert calibration_saved["units"]["description"] == "MOS (1-5)"
  assert _in_mos_range(calibration_saved["label_range"])

  # RMSE in MOS: with 4 videos the metrics fit the least-squares line, here computed by numpy.
  report = result.report
  assert report.fit == "linear"
  slope, intercept = np.polyfit(score, label, 1)
  assert report.rmse == pytest.approx(np.sqrt(np.mean((slope * score + intercept - label) ** 2)))
  assert report.srcc == pytest.approx(scipy.stats.spearmanr(score, label).statistic)
  # The run's own test row (train.py's table, TensorBoard's test/ scalars) is the same number.
  test_rows = [
      json.loads(line)
      for line in (workdir / "metrics.jsonl").read_text().splitlines()
      if "test/model_ema_weights_test/rmse" in line
  ]
  logged = [row["test/model_ema_weights_test/rmse"] for row in test_rows]
  assert logged and logged[-1] == pytest.approx(report.rmse, rel=1e-9)
  assert f"{report.rmse:.4f}" in printed

  # The plot's axes run over the set's MOS range (1.1-4.9), not 0-1.
  (scatter,) = figures
  axes = scatter.axes[0]
  for limits in (axes.get_xlim(), axes.get_ylim()):
    assert min(published.values()) - 0.5 <= limits[0] < 1.5 and 4.5 < limits[1] <= 5.5
  assert "MOS (1-5)" in axes.get_ylabel()

  # `jaxvqa score` rows and the Python API give the same MOS for the same files.
  paths = [video["path"] for video in videos]
  out = tmp_path / "scores.csv"
  status, _, stderr = run_cli(
      ["score", "--workdir", str(workdir), "--format", "csv", "--no-progress", "--output", str(out)]
      + paths
  )
  assert status == 0, stderr
  rows = {row["path"]: row for row in csv.DictReader(io.StringIO(out.read_text()))}
  row_scores = np.array([float(rows[path]["score"]) for path in paths])
  np.testing.assert_array_equal(row_scores, score)
  assert all(rows[path]["scale"].startswith("MOS (1-5), calibrated") for path in paths)
  model = jaxvqa.load(workdir)
  assert model.units == "MOS (1-5)"
  assert model.score(paths[0]) == pytest.approx(score[0], abs=1e-12)


def test_every_builder_names_its_published_scale():
  from jaxvqa.data import builders

  assert set(builders.BUILDERS) == set(label_scale.PUBLISHED)
  for name, builder in builders.BUILDERS.items():
    assert builder.SCALE is label_scale.PUBLISHED[name], name

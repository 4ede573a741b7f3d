"""Evaluating a finished run on a split of its data set: `python eval.py --workdir DIR`.

    WORKDIR/config.json (+ --config.data.* overrides) ──▶ data set split, model
    WORKDIR/best|checkpoints ──▶ weights, calibration
      ──evaluation.predict_split──▶ raw scores ──calibration──▶ label-scale scores
      ──metrics.evaluate──▶ PLCC, SRCC, KRCC, RMSE, count (printed as a table)
      ──▶ OUT/<split>_<which>_<weights>.json   metrics, fit, checkpoint, every video's score
      ──▶ OUT/<split>_<which>_<weights>.png    label against score, with the fitted logistic

The per-device batch is the one `jaxvqa score` uses, so the JSON's scores are bit-identical to
what `jaxvqa score` prints for the same files (the data set stores each file's bytes; decoding
them or the file gives the same frames).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping

import ml_collections
import numpy as np

from jaxvqa import evaluation, inference, metrics, plots
from jaxvqa.data import datasets, pipeline
from jaxvqa.run_log import configure_logging

log = logging.getLogger(__name__)

# Only the data may be changed at evaluation time: the model is fixed by the checkpoint.
OVERRIDABLE_PREFIX = "data."


@dataclasses.dataclass
class EvalResult:
  report: metrics.QualityReport
  fit: metrics.LogisticFit
  checkpoint: inference.CheckpointInfo
  split: str
  calibration: tuple[float, float] | None
  videos: list[dict[str, Any]]  # one record per scored video (see `_video_records`)
  dropped: int                  # videos that failed to decode and were left out
  json_path: Path
  plot_path: Path


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> None:
  """Sets dotted `data.*` fields of `config` (e.g. {"data.manual_dir": "/data/other"})."""
  for field, value in overrides.items():
    if not field.startswith(OVERRIDABLE_PREFIX):
      raise ValueError(
          f"--config.{field}: only data fields can be overridden at evaluation; the model and "
          "training settings are those of the checkpoint")
    *parents, name = field.split(".")
    node = config
    for part in parents:
      node = node[part]
    if name not in node:
      raise ValueError(f"--config.{field}: the run's config has no such field")
    node[name] = value


def _names(data_source, indices: np.ndarray, chunk: int = 64) -> list[str]:
  """The `name` field of the examples at `indices` (reads those records again)."""
  names = []
  for start in range(0, len(indices), chunk):
    keys = [int(i) for i in indices[start:start + chunk]]
    records = (data_source.__getitems__(keys) if hasattr(data_source, "__getitems__")
               else [data_source[k] for k in keys])
    names.extend(pipeline.text(record["name"]) for record in records)
  return names


def _video_records(predictions: evaluation.SplitPredictions, scores: np.ndarray,
                   names: list[str], manual_dir: Path) -> list[dict[str, Any]]:
  return [
      {"index": int(index), "name": name, "path": str(manual_dir / name), "label": float(label),
       "score": float(score), "raw_score": float(raw)}
      for index, name, label, score, raw in zip(
          predictions.index, names, predictions.label, scores, predictions.score)]


def _strict_json(value: Any) -> Any:
  """NaN and inf → null (JSON has neither), recursively."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {key: _strict_json(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [_strict_json(item) for item in value]
  return value


def evaluate_checkpoint(
    workdir: str | Path, *, split: str = datasets.TEST, which: str = "best", ema: bool = True,
    out_dir: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
    per_device_batch: int = inference.DEFAULT_PER_DEVICE_BATCH, num_devices: int | None = None,
) -> EvalResult:
  """Scores `split` with a run's checkpoint and writes the JSON and the plot (module docstring).

  Args:
    workdir: the run directory `python train.py` wrote.
    split: "train", "validation" or "test".
    which: "best" or "latest" checkpoint.
    ema: EMA weights (default) or raw weights.
    out_dir: where the JSON and PNG go (default WORKDIR/eval).
    overrides: dotted `data.*` config fields to change, e.g. another data set's manual_dir.
    per_device_batch: clips per device per call (keep `jaxvqa score`'s for identical scores).
    num_devices: use the first N devices (default all).
  """
  workdir = Path(workdir).absolute()
  config = inference.load_run_config(workdir)
  apply_overrides(config, overrides or {})
  trained = inference.load_trained_model(
      workdir, which=which, ema=ema, num_devices=num_devices, config=config)
  data = datasets.open_run_data(config.data, seed=config.seed)
  if split not in data.splits or len(data.splits[split]) == 0:
    available = sorted(name for name, source in data.splits.items() if len(source))
    raise ValueError(f"split {split!r} is empty or absent in {data.manual_dir}; "
                     f"available: {available}")
  source = data.splits[split]
  predictions = evaluation.predict_split(
      trained.score_step, trained.params, source, data.frames,
      batch_size=trained.global_batch_size(per_device_batch), mesh=trained.mesh,
      num_workers=config.data.num_workers)
  if predictions.dropped:
    log.warning("%d videos of the %s split failed to decode and are left out (see the warnings "
                "above for each)", predictions.dropped, split)
  scores = trained.calibrate(predictions.score)
  checkpoint = trained.checkpoint
  report = metrics.evaluate(
      scores, predictions.label, name=f"{split} ({checkpoint.which}, {checkpoint.weights} weights)")
  fit = metrics.fit_logistic(scores, predictions.label)
  videos = _video_records(predictions, scores, _names(source, predictions.index), data.manual_dir)

  out_dir = Path(out_dir) if out_dir is not None else workdir / "eval"
  stem = f"{split}_{checkpoint.which}_{checkpoint.weights}"
  document = {
      "split": split,
      "data": str(data.manual_dir),
      "model": trained.describe(),
      "checkpoint": checkpoint.to_dict(),
      "calibration": list(trained.calibration) if trained.calibration is not None else None,
      "metrics": report.to_dict(),
      "fit": {"kind": fit.kind, "params": list(fit.params)},
      "dropped": predictions.dropped,
      "videos": videos,
  }
  out_dir.mkdir(parents=True, exist_ok=True)
  json_path = out_dir / f"{stem}.json"
  json_path.write_text(json.dumps(_strict_json(document), indent=2, allow_nan=False) + "\n")
  scale = "VMAF-scale" if config.data.builder == "compressed" else "calibrated"
  plot_path = plots.scatter_with_fit(
      scores, predictions.label, out_dir / f"{stem}.png", fit=fit, report=report,
      title=f"{split} split, {checkpoint.which} checkpoint (step {checkpoint.step}, "
            f"{checkpoint.weights} weights)",
      xlabel=f"predicted score ({scale})" if trained.calibration else "predicted score (raw)",
      ylabel="label")
  return EvalResult(report=report, fit=fit, checkpoint=checkpoint, split=split,
                    calibration=trained.calibration, videos=videos, dropped=predictions.dropped,
                    json_path=json_path, plot_path=plot_path)


def main(workdir: str | Path, **kwargs) -> EvalResult:
  """`eval.py`: evaluates, prints the metrics table and where the files went."""
  configure_logging()
  result = evaluate_checkpoint(workdir, **kwargs)
  print(f"checkpoint: {result.checkpoint.describe()}")
  if result.calibration is None:
    print("scores: raw model output (this checkpoint carries no calibration)")
  print(metrics.format_table([result.report]))
  if result.dropped:
    print(f"{result.dropped} videos failed to decode and were left out")
  print(f"wrote {result.json_path} and {result.plot_path}")
  return result

"""Evaluating a finished run on a split of its data set: `python eval.py --workdir DIR`.

    WORKDIR/config.json (+ --config.data.* overrides) ──▶ data set split, model
    WORKDIR/best|checkpoints ──▶ weights, calibration
      ──split_predictions.predict_split──▶ raw scores ──calibration──▶ label-scale scores
      ──metrics.evaluate──▶ PLCC, raw Pearson, SRCC, KRCC, RMSE, count (printed as a table)
      (labels, scores, RMSE and the plots' axes in the set's own units: MOS 1-5, VMAF 0-100, ...;
      jaxvqa.data.label_scale says how, and how a lower-is-better DMOS set is reported)
      ──▶ OUT/<split>_<which>_<weights>.json       metrics, fit, checkpoint, every video's score
      ──▶ OUT/<split>_<which>_<weights>.png        label against score over the label range,
                                                   identity line, colour = rung, marker = source
      ──▶ OUT/<split>_<which>_<weights>_rate.png   per source: predicted score (solid) and label
                                                   (dashed) against achieved bitrate (compressed
                                                   sets only: the others carry no bitrate)
      ──▶ WORKDIR/tensorboard (when it exists)     the same figures as images

A checkpoint without a calibration (a periodic save) gives raw scores on the model's own scale;
its figures then plot the scores through a calibration fitted on the evaluated split itself, so the
axes are still the label's, and the axis title says so.

The per-device batch is the one `jaxvqa score` uses, so the JSON's scores are bit-identical to
what `jaxvqa score` prints for the same files (the data set stores each file's bytes; decoding
them or the file gives the same frames).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Mapping

import ml_collections
import numpy as np

from jaxvqa import metrics, strict_json
from jaxvqa.data import label_scale
from jaxvqa.evaluate import calibration as calibration_lib, plots, split_predictions
from jaxvqa.serve import inference
from jaxvqa.data import datasets, pipeline
from jaxvqa.train.run_log import configure_logging

log = logging.getLogger(__name__)

# Only the data may be changed at evaluation time: the model is fixed by the checkpoint.
OVERRIDABLE_PREFIX = "data."
# Where train.py's RunLog writes TensorBoard events under the workdir.
TENSORBOARD_DIR = "tensorboard"


@dataclasses.dataclass
class EvalResult:
  report: metrics.QualityReport
  fit: metrics.LogisticFit
  checkpoint: inference.CheckpointInfo
  split: str
  calibration: calibration_lib.Calibration | None  # onto label_scale's units
  label_scale: label_scale.LabelScale  # the units of every label, score and RMSE here
  videos: list[dict[str, Any]]  # one record per scored video (see `_video_records`)
  dropped: int  # videos that failed to decode and were left out
  json_path: Path
  plot_paths: list[Path]  # the scatter plot, then the rate plot when the set has bitrates


def apply_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> None:
  """Sets dotted `data.*` fields of `config` (e.g. {"data.manual_dir": "/data/other"})."""
  for field, value in overrides.items():
    if not field.startswith(OVERRIDABLE_PREFIX):
      raise ValueError(
          f"--config.{field}: only data fields can be overridden at evaluation; the model and "
          "training settings are those of the checkpoint"
      )
    *parents, name = field.split(".")
    node = config
    for part in parents:
      node = node[part]
    if name not in node:
      raise ValueError(f"--config.{field}: the run's config has no such field")
    node[name] = value


def _descriptions(data_source, indices: np.ndarray, chunk: int = 64) -> list[dict[str, Any]]:
  """name, source and, where the set has them (compressed sets), rung and achieved bitrate of the
  examples at `indices` (reads those records again)."""
  described = []
  for record in pipeline.read_records(data_source, indices, chunk):
    entry = {"name": pipeline.text(record["name"])}
    if "source" in record:
      entry["source"] = pipeline.text(record["source"])
    if "group" in record:
      entry["rung"] = int(record["group"])
    if "bitrate_kbps" in record:
      entry["bitrate_kbps"] = float(record["bitrate_kbps"])
    described.append(entry)
  return described


def _video_records(
    predictions: split_predictions.SplitPredictions,
    scores: np.ndarray,
    described: list[dict[str, Any]],
    manual_dir: Path,
    scale: label_scale.LabelScale,
) -> list[dict[str, Any]]:
  """One record per video; label and score in the set's units, raw_score the network's output."""
  return [
      {
          "index": int(index),
          **entry,
          "path": str(manual_dir / entry["name"]),
          "label": float(label),
          "score": float(score),
          "raw_score": float(raw),
      }
      for index, entry, label, score, raw in zip(
          predictions.index, described, scale.to_units(predictions.label), scores, predictions.score
      )
  ]


def _column(videos: list[dict[str, Any]], key: str) -> list[Any] | None:
  """Every video's `key`, or None when any video lacks it."""
  return [video[key] for video in videos] if all(key in video for video in videos) else None


def _figures(
    videos: list[dict[str, Any]],
    report: metrics.QualityReport,
    fit: metrics.LogisticFit,
    *,
    calibrated: bool,
    scale: label_scale.LabelScale,
    title: str,
) -> dict[str, Any]:
  """{"scatter": Figure, ["rate": Figure]} of the evaluated videos (module docstring), over the
  range of the set's published scores in its units."""
  scores = np.array([video["score"] for video in videos])
  label = np.array([video["label"] for video in videos])
  # Raw scores are put on the label's scale by the same map a best checkpoint carries (increasing
  # in quality), fitted here; `fit` itself can be a falling line, which would flip a backwards model.
  sign = scale.sign
  shown = (
      scores if calibrated else sign * calibration_lib.fit_calibration(scores, sign * label)(scores)
  )
  label_name = scale.describe()
  xlabel = (
      f"predicted score ({label_name})"
      if calibrated
      else f"raw score, calibrated on this split for display ({label_name})"
  )
  sources, rungs = _column(videos, "source"), _column(videos, "rung")
  figures = {
      "scatter": plots.scatter_figure(
          shown,
          label,
          fit=fit if calibrated and scale.higher_is_better else None,
          report=report,
          rungs=rungs,
          sources=sources,
          title=title,
          xlabel=xlabel,
          ylabel=f"label ({label_name})",
          label_range=scale.span(),
      )
  }
  bitrates = _column(videos, "bitrate_kbps")
  if bitrates is not None and sources is not None:
    figures["rate"] = plots.rate_quality_figure(
        np.array(bitrates),
        shown,
        label,
        sources,
        title=title,
        label_name=label_name,
        ylabel=f"score ({label_name if calibrated else 'raw, calibrated on this split'})",
        label_range=scale.span(),
    )
  return figures


def _write_tensorboard(directory: Path, tag: str, figures: Mapping[str, Any], step: int) -> None:
  from tensorboardX import SummaryWriter

  # add_image of pixels rendered here: tensorboardX's add_figure imports pyplot, which the plots
  # module keeps out of the process.
  with SummaryWriter(str(directory)) as writer:
    for name, figure in figures.items():
      writer.add_image(f"{tag}/{name}", plots.figure_rgb(figure), step, dataformats="HWC")


def evaluate_checkpoint(
    workdir: str | Path,
    *,
    split: str = datasets.TEST,
    which: str = "best",
    ema: bool = True,
    out_dir: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    per_device_batch: int = inference.DEFAULT_PER_DEVICE_BATCH,
    num_devices: int | None = None,
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
      workdir, which=which, ema=ema, num_devices=num_devices, config=config
  )
  data = datasets.open_run_data(config.data, seed=config.seed)
  if split not in data.splits or len(data.splits[split]) == 0:
    available = sorted(name for name, source in data.splits.items() if len(source))
    raise ValueError(
        f"split {split!r} is empty or absent in {data.manual_dir}; available: {available}"
    )
  source = data.splits[split]
  predictions = split_predictions.predict_split(
      trained.score_step,
      trained.params,
      source,
      data.frames,
      batch_size=trained.global_batch_size(per_device_batch),
      mesh=trained.mesh,
      num_workers=config.data.num_workers,
  )
  if predictions.dropped:
    log.warning(
        "%d videos of the %s split failed to decode and are left out (see the warnings "
        "above for each)",
        predictions.dropped,
        split,
    )
  scale = data.label_scale
  calibration = trained.calibration
  trained_on = inference.load_run_config(workdir).data.builder
  if (
      calibration is not None
      and calibration.units is None
      and scale.rescaled
      and trained_on == config.data.builder
  ):
    # Saved before calibrations were in the set's units: fitted on the stored label of this set.
    calibration = calibration.in_units(scale)
  scores = calibration(predictions.score) if calibration is not None else predictions.score
  checkpoint = trained.checkpoint
  label = scale.to_units(predictions.label)
  report = label_scale.evaluate(
      scores,
      label,
      scale,
      calibrated=calibration is not None,
      name=f"{split} ({checkpoint.which}, {checkpoint.weights} weights)",
  )
  # In the report's orientation (quality rises), so for DMOS the curve the metrics used.
  oriented_scores = scores * scale.sign if calibration is not None else scores
  fit = metrics.fit_logistic(oriented_scores, label * scale.sign)
  videos = _video_records(
      predictions, scores, _descriptions(source, predictions.index), data.manual_dir, scale
  )

  out_dir = Path(out_dir) if out_dir is not None else workdir / "eval"
  stem = f"{split}_{checkpoint.which}_{checkpoint.weights}"
  document = {
      "split": split,
      "data": str(data.manual_dir),
      "model": trained.describe(),
      "checkpoint": checkpoint.to_dict(),
      "calibration": calibration.to_dict() if calibration is not None else None,
      "label_scale": scale.to_dict(),
      "metrics": report.to_dict(),
      "fit": fit.to_dict(),
      "dropped": predictions.dropped,
      "videos": videos,
  }
  out_dir.mkdir(parents=True, exist_ok=True)
  json_path = out_dir / f"{stem}.json"
  json_path.write_text(strict_json.dumps(document, indent=2) + "\n")
  figures = _figures(
      videos,
      report,
      fit,
      calibrated=calibration is not None,
      scale=scale,
      title=f"{split} split, {checkpoint.which} checkpoint (step {checkpoint.step}, "
      f"{checkpoint.weights} weights)",
  )
  plot_paths = [
      plots.save_png(figure, out_dir / f"{stem}{'' if name == 'scatter' else '_' + name}.png")
      for name, figure in figures.items()
  ]
  tensorboard = workdir / TENSORBOARD_DIR
  if tensorboard.is_dir():
    _write_tensorboard(tensorboard, f"eval/{stem}", figures, checkpoint.step)
  # An argument vector (declarative), alike in shape to scoring/batches.py's keyword calls.
  return EvalResult(
      report=report,
      fit=fit,
      checkpoint=checkpoint,
      split=split,
      calibration=calibration,
      label_scale=scale,
      videos=videos,
      dropped=predictions.dropped,
      json_path=json_path,
      plot_paths=plot_paths,
  )


def main(workdir: str | Path, **kwargs) -> EvalResult:
  """`eval.py`: evaluates, prints the metrics table and where the files went."""
  configure_logging()
  result = evaluate_checkpoint(workdir, **kwargs)
  print(f"checkpoint: {result.checkpoint.describe()}")
  if result.calibration is None:
    print("scores: raw model output (this checkpoint carries no calibration)")
  else:
    print(f"scores: label scale (calibration: {result.calibration.describe()})")
  print(f"labels, scores and RMSE in {result.label_scale.describe()}; correlations against quality")
  print(metrics.format_table([result.report]))
  if result.fit.reason:
    print(f"PLCC and RMSE through the {result.fit.kind} fit: {result.fit.reason}")
  if result.dropped:
    print(f"{result.dropped} videos failed to decode and were left out")
  print(f"wrote {', '.join(str(path) for path in [result.json_path, *result.plot_paths])}")
  return result

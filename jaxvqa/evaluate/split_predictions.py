"""Scoring a whole split: every example once, predictions gathered from all devices and processes."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
from jax.experimental import multihost_utils

from jaxvqa import metrics
from jaxvqa.data import label_scale
from jaxvqa.evaluate import calibration as calibration_lib
from jaxvqa.train import parallel
from jaxvqa.data import pipeline


@dataclasses.dataclass
class SplitPredictions:
  index: np.ndarray  # int [N] example index in the split
  score: np.ndarray  # float [N] raw model output
  label: np.ndarray  # float [N] the stored label (what the model trains on)
  dropped: int  # examples that failed to decode and were left out

  def report(
      self,
      name: str = "",
      calibration: calibration_lib.Calibration | None = None,
      scale: label_scale.LabelScale = label_scale.VMAF,
  ) -> metrics.QualityReport:
    """Metrics in the set's own units (`scale`; RMSE in them), of the calibrated scores when a
    calibration onto those units is given, else of the raw ones."""
    score = self.score if calibration is None else calibration(self.score)
    return label_scale.evaluate(
        score, scale.to_units(self.label), scale, calibrated=calibration is not None, name=name
    )


def predict_split(
    score_fn: Callable[[Any, dict], Any],
    params: Any,
    data_source,
    frames: pipeline.FrameOptions,
    *,
    batch_size: int,
    mesh,
    num_workers: int = 0,
    process_index: int = 0,
    process_count: int = 1,
) -> SplitPredictions:
  """Runs `score_fn(params, global_batch) -> [B]` over every example of `data_source`."""
  parallel.check_batch_size(batch_size, mesh, "config.data.eval_batch_size")
  loader = pipeline.eval_loader(
      data_source,
      frames,
      global_batch_size=batch_size,
      process_index=process_index,
      process_count=process_count,
      num_workers=num_workers,
  )
  indices, scores, labels, dropped = [], [], [], 0
  for local_batch in loader:
    batch = parallel.global_batch(local_batch, mesh)
    score = score_fn(params, batch)
    gathered = multihost_utils.process_allgather(
        {"score": score, "label": batch["label"], "mask": batch["mask"], "index": batch["index"]},
        tiled=True,
    )
    keep = np.asarray(gathered["mask"], bool)
    indices.append(np.asarray(gathered["index"])[keep])
    scores.append(np.asarray(gathered["score"], np.float64)[keep])
    labels.append(np.asarray(gathered["label"], np.float64)[keep])
    dropped += int(np.sum((np.asarray(gathered["index"]) >= 0) & ~keep))
  return SplitPredictions(
      index=np.concatenate(indices),
      score=np.concatenate(scores),
      label=np.concatenate(labels),
      dropped=dropped,
  )

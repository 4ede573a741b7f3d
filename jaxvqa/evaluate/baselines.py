"""Reference predictors that need no learning of pixels, to judge what the model adds.

The bits-per-pixel baseline is what a compressed-video quality model must beat: within one source,
more bits per pixel almost always means a higher VMAF, so a line through log(bpp) already ranks
encodes well. It is fitted on the training split and applied to the held-out one.
"""

from __future__ import annotations

import numpy as np

from jaxvqa.data import manifest
from jaxvqa.evaluate.split_predictions import SplitPredictions

_RATE_FIELDS = ("bitrate_kbps", "width", "height", "fps")


def _log_bpp_and_labels(data_source) -> tuple[np.ndarray, np.ndarray]:
  records = [data_source[i] for i in range(len(data_source))]
  log_bpp = np.log([manifest.bits_per_pixel(record) for record in records])
  labels = np.array([float(record["label"]) for record in records])
  return log_bpp, labels


def bits_per_pixel_baseline(train_source, test_source) -> SplitPredictions | None:
  """label ≈ a·log(bpp) + b fitted on `train_source`, applied to `test_source`.

  None when the data set has no bitrate (the public sets).
  """
  if len(train_source) < 2 or not all(field in train_source[0] for field in _RATE_FIELDS):
    return None
  train_x, train_y = _log_bpp_and_labels(train_source)
  slope, intercept = np.polyfit(train_x, train_y, 1)
  test_x, test_y = _log_bpp_and_labels(test_source)
  return SplitPredictions(
      index=np.arange(len(test_y)), score=slope * test_x + intercept, label=test_y, dropped=0
  )

"""Pooled statistics of a file's segment scores, as VMAF's JSON writes its `pooled_metrics`.

mean, min and max as libvmaf has them; `harmonic_mean` is libvmaf's too, 1 / mean(1 / (s + 1)) − 1
(the +1 keeps a score of 0 finite: a plain harmonic mean of VMAF scores is 0 as soon as one frame
is), and is None when a score is at or below −1 (raw, uncalibrated scores can be); `p5` is the 5th
percentile (numpy's linear interpolation), the figure streaming engineers quote for the worst
moments, which neither libvmaf nor ffmpeg-quality-metrics writes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

POOLED_STATISTICS = ("mean", "harmonic_mean", "min", "max", "p5")


def pool_scores(scores: Sequence[float]) -> dict[str, float | None] | None:
  """{mean, harmonic_mean, min, max, p5} of `scores`; None when there are none. A NaN score
  makes every statistic None (JSON null)."""
  import scipy.stats  # here: `jaxvqa --help` reads records.FORMATS and need not load scipy

  values = np.asarray(scores, np.float64)
  if values.size == 0:
    return None
  if not np.all(np.isfinite(values)):
    return dict.fromkeys(POOLED_STATISTICS)
  harmonic = float(scipy.stats.hmean(values + 1.0) - 1.0) if np.all(values > -1.0) else None
  return {
      "mean": float(np.mean(values)),
      "harmonic_mean": harmonic,
      "min": float(np.min(values)),
      "max": float(np.max(values)),
      "p5": float(np.percentile(values, 5)),
  }

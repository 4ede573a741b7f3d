"""The units a data set's scores are published in, and the map from the label the model trains on.

The public sets' builders (`jaxvqa.data.builders.base`) store two numbers per example: `raw_score`,
the score as published, and `label`, its min-max scaling to [0, 1] with higher always better. The
label is what the losses and the model see, and only they: every number a person reads (validation
and test metrics, their TensorBoard scalars, eval.py's JSON and plots, the calibration, hence
every `jaxvqa score` row and `jaxvqa.load().score`) is in the set's own units. `LabelScale.to_units`
undoes the scaling exactly: label 0 is the worst published score of the set's label files, label 1
the best.

A lower-is-better set (DMOS, LIVE IQA) is reported as published: labels and scores are DMOS, lower
is better, and the calibration is a decreasing map of the model's output (which rises with quality).
Its PLCC, SRCC and KRCC are computed against quality, i.e. against −DMOS, so a model that agrees
with the viewers has positive correlations, as the literature reports them for DMOS sets; its RMSE
is in DMOS units (negating both sides leaves it unchanged).

make-dataset's sets (and the demo set) are labelled with VMAF, which is not rescaled: there the
label is the published score (`worst` and `best` are None).

This module imports neither JAX nor TFDS: `jaxvqa score` reads it to describe its scores.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class LabelScale:
  """A data set's published score and how the training label relates to it.

  Attributes:
    name: what the score is ("MOS", "DMOS", "VMAF", "MS-SSIM").
    nominal: the scale as published, for people ((1, 5) for KoNViD-1k's MOS).
    higher_is_better: False for DMOS-like scores.
    worst, best: the published scores that training labels 0 and 1 stand for (the worst and best
      of the set's label files); None when the label is the published score itself (VMAF).
  """

  name: str
  nominal: tuple[float, float]
  higher_is_better: bool = True
  worst: float | None = None
  best: float | None = None

  @property
  def rescaled(self) -> bool:
    """Whether the training label is a min-max scaling of the published score."""
    return self.worst is not None

  @property
  def sign(self) -> float:
    """+1 when higher is better, −1 otherwise: units × sign rises with quality."""
    return 1.0 if self.higher_is_better else -1.0

  def anchored(self, published: Any) -> LabelScale:
    """This scale with `worst` and `best` taken from every published score [N] of the set."""
    published = np.asarray(published, np.float64)
    low, high = float(published.min()), float(published.max())
    worst, best = (low, high) if self.higher_is_better else (high, low)
    return dataclasses.replace(self, worst=worst, best=best)

  def to_label(self, published: Any) -> np.ndarray:
    """float32 [N] training labels of published scores [N]: 0 worst, 1 best (a set whose scores
    are all equal maps to 0.5). Unchanged when the scale is not rescaled."""
    published = np.asarray(published, np.float64)
    if not self.rescaled:
      return published.astype(np.float32)
    if self.best == self.worst:
      return np.full(published.shape, 0.5, np.float32)
    return ((published - self.worst) / (self.best - self.worst)).astype(np.float32)

  def to_units(self, label: Any) -> np.ndarray:
    """float64 [N] published-scale values of training labels [N] (the inverse of `to_label`)."""
    label = np.asarray(label, np.float64)
    if not self.rescaled:
      return label
    return self.worst + (self.best - self.worst) * label

  def span(self) -> tuple[float, float] | None:
    """(lowest, highest) published score of the set's label files; None when not rescaled or
    when every score is the same."""
    if not self.rescaled or self.worst == self.best:
      return None
    return (min(self.worst, self.best), max(self.worst, self.best))

  def describe(self) -> str:
    """ "MOS (1-5)", "DMOS (0-100, lower is better)", "VMAF (0-100)"."""
    low, high = (f"{value:g}" for value in self.nominal)
    direction = "" if self.higher_is_better else ", lower is better"
    if self.higher_is_better and "DMOS" in self.name:  # where DMOS usually means lower is better
      direction = ", higher is better"
    return f"{self.name} ({low}-{high}{direction})"

  def to_dict(self) -> dict[str, Any]:
    return {
        "name": self.name,
        "nominal": list(self.nominal),
        "higher_is_better": self.higher_is_better,
        "worst": self.worst,
        "best": self.best,
        "description": self.describe(),
    }

  @classmethod
  def from_dict(cls, saved: Mapping[str, Any]) -> LabelScale:
    missing = sorted({"name", "nominal", "higher_is_better"} - set(saved))
    if missing:
      raise ValueError(f"a saved label scale lacks {missing}: {dict(saved)!r}")
    low, high = (float(value) for value in saved["nominal"])
    optional = {key: saved.get(key) for key in ("worst", "best")}
    return cls(
        name=str(saved["name"]),
        nominal=(low, high),
        higher_is_better=bool(saved["higher_is_better"]),
        **{key: None if value is None else float(value) for key, value in optional.items()},
    )


VMAF = LabelScale("VMAF", (0.0, 100.0))
# A mixture of sets (jaxvqa.data.mixture) trains on each set's 0-1 label and ranks within a set;
# pooled reports stay in those shared 0-1 units, as no one published scale covers them.
MIXED = LabelScale("rescaled score of each set", (0.0, 1.0))

# Each builder's published score (keys of jaxvqa.data.builders.BUILDERS), before its label files
# anchor it. KADID-10K's column is called "dmos", but its ratings are degradation-category ratings
# where 5 means "imperceptible": higher is better. make-iqa-set's sets are labelled with MS-SSIM.
PUBLISHED = {
    "compressed": VMAF,
    "konvid_1k": LabelScale("MOS", (1.0, 5.0)),
    "live_vqc": LabelScale("MOS", (0.0, 100.0)),
    "youtube_ugc": LabelScale("MOS", (1.0, 5.0)),
    "lsvq": LabelScale("MOS", (0.0, 100.0)),
    "koniq_10k": LabelScale("MOS", (1.0, 5.0)),
    "kadid_10k": LabelScale("DMOS", (1.0, 5.0)),
    "live_iqa": LabelScale("DMOS", (0.0, 100.0), higher_is_better=False),
    "clive": LabelScale("MOS", (0.0, 100.0)),
    "distorted_photos": LabelScale("MS-SSIM", (0.0, 1.0)),
}


def evaluate(score: Any, label: Any, scale: LabelScale, *, calibrated: bool, name: str = ""):
  """`metrics.evaluate` in the set's units (module docstring): label [N] in units; score [N]
  calibrated (in units) or raw model output (which rises with quality). A lower-is-better set is
  evaluated against quality: its RMSE stays in its units and its correlations are positive when
  the model agrees with the viewers."""
  from jaxvqa import metrics  # scipy: not needed to describe a scale

  sign = scale.sign
  oriented = np.asarray(score, np.float64) * (sign if calibrated else 1.0)
  return metrics.evaluate(oriented, sign * np.asarray(label, np.float64), name=name)

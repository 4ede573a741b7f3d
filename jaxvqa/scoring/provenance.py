"""What produced a set of scores (`Provenance`): model, version, scale, label source, frames and
the size files were decoded at.

Every output format carries it, and every CSV and JSON-lines row repeats it, so a row cut out of
its file still says what produced it and `--resume` can tell one model's rows from another's.
This module imports neither JAX nor the model: the command's parser reads `records.FORMATS`
without JAX, and `records` imports this.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jaxvqa.data import label_scale
from jaxvqa.data.label_tools import vmaf_label_source
from jaxvqa.scoring.sampling import Sampling

if TYPE_CHECKING:
  from jaxvqa.serve.inference import TrainedModel

# What each data builder's published scores are (jaxvqa.data.builders.BUILDERS; not imported: it
# needs TFDS, which inference machines lack). A calibration saved with its units says them itself.
LABEL_SCALES = {builder: scale.describe() for builder, scale in label_scale.PUBLISHED.items()}
VMAF_BUILDER = "compressed"  # make-dataset's sets and the demo set: labels measured with libvmaf


@dataclasses.dataclass(frozen=True)
class Provenance:
  """What produced a set of scores; every output format carries it."""

  model: str  # architecture and input in one line (TrainedModel.describe)
  model_id: str  # TrainedModel.identity: equal exactly when the scores would be
  model_version: str  # a shipped model's id (name-version), or the run, step and weights
  model_config: dict[str, Any]
  checkpoint: dict[str, Any]  # inference.CheckpointInfo.to_dict()
  calibration: dict[str, Any] | None
  scale: str  # scale_description
  label_source: str  # what the labels the model learnt were (label_source)
  jaxvqa_version: str
  sampling: Sampling  # the frames each score reads
  # (width, height) every file was decoded at (--display-size); None: each at its own size.
  display_size: tuple[int, int] | None = None

  @classmethod
  def of(
      cls,
      trained: TrainedModel,
      sampling: Sampling | None = None,
      display_size: tuple[int, int] | None = None,
  ) -> Provenance:
    from jaxvqa import __version__

    clip_length = trained.frames.num_frames
    return cls(
        model=trained.describe(),
        model_id=trained.identity,
        model_version=model_version(trained),
        model_config=trained.config.model.to_dict(),
        checkpoint=trained.checkpoint.to_dict(),
        calibration=(trained.calibration.to_dict() if trained.calibration is not None else None),
        scale=scale_description(trained),
        label_source=label_source(trained),
        jaxvqa_version=__version__,
        sampling=sampling or Sampling(clip_length=clip_length, frames=clip_length),
        display_size=display_size,
    )

  @property
  def display_size_text(self) -> str | None:
    """The display size as rows and --display-size write it ("320x180"); None without one."""
    if self.display_size is None:
      return None
    width, height = self.display_size
    return f"{width}x{height}"

  def row_fields(self) -> dict[str, Any]:
    """Repeated on every CSV and JSON-lines row, so a row cut out of its file still says what
    produced it and `--resume` can tell one model's rows (and options) from another's."""
    return {
        "scale": self.scale,
        "model_id": self.model_id,
        "checkpoint": self.checkpoint["path"],
        "step": self.checkpoint["step"],
        "model": self.model,
        "frames": self.sampling.frames,
        "segmented_by": self.sampling.segmented_by,
        "display_size": self.display_size_text,
        "label_source": self.label_source,
        "model_version": self.model_version,
        "jaxvqa_version": self.jaxvqa_version,
    }


def decoded_at(display_size: str | None) -> str:
  """How a run decoded the files, from its `display_size` field ("320x180" or None), as its table
  header and a refused --resume say it."""
  if display_size is None:
    return "each file at its own size (no --display-size)"
  return f"every file at {display_size} (--display-size {display_size})"


def shipped_card(trained: TrainedModel) -> dict[str, Any] | None:
  """The model.json of a shipped model (`inference.load_shipped_model`); None for a run."""
  from jaxvqa.serve import inference

  if not trained.checkpoint.which.startswith("shipped"):
    return None
  try:
    card = json.loads((Path(trained.checkpoint.path) / inference.SHIPPED_CARD).read_text())
  except (OSError, ValueError):
    return None
  return card if isinstance(card, dict) else None


def _card_label(card: dict[str, Any]) -> str | None:
  training = card.get("training")
  label = training.get("label") if isinstance(training, dict) else None
  return label if isinstance(label, str) else None


def _label_scale(trained: TrainedModel) -> str:
  if trained.calibration is not None and trained.calibration.units is not None:
    return trained.calibration.units.describe()
  card = shipped_card(trained)
  if card is not None:
    label = _card_label(card) or ""
    return (
        LABEL_SCALES[VMAF_BUILDER] if label.startswith("VMAF") else "the labels of its model.json"
    )
  builder = trained.config.data.get("builder", "")
  if trained.calibration is not None and builder != VMAF_BUILDER:
    # Saved before calibrations were in the set's units: onto the stored label, scaled to [0, 1].
    return f"the training label of data set {builder!r}, its scores scaled to 0-1 (1 best)"
  return LABEL_SCALES.get(builder, f"the labels of data set {builder!r}")


def scale_description(trained: TrainedModel) -> str:
  """What a score means: the label scale and its calibration, or that it is raw model output."""
  label = _label_scale(trained)
  if trained.calibration is None:
    return (
        f"raw model output, uncalibrated (not {label}): the {trained.checkpoint.which} "
        "checkpoint carries no calibration; use --which best for scores on the label scale"
    )
  # A run's best checkpoint is calibrated on its validation split; a shipped model
  # (kfold_ship.ship_model) on the encodes it was trained on, having no split held back.
  fitted_on = (
      "its training encodes" if shipped_card(trained) is not None else "the validation split"
  )
  return (
      f"{label}, calibrated on {fitted_on}: label scale "
      f"(calibration: {trained.calibration.describe()})"
  )


def label_source(trained: TrainedModel) -> str:
  """Where the labels the model learnt came from: a shipped model's model.json says it; a run's
  config.data.builder does (VMAF for make-dataset and demo sets, a data set's MOS otherwise)."""
  card = shipped_card(trained)
  if card is not None:
    return _card_label(card) or "not named in its model.json"
  builder = trained.config.data.get("builder", "")
  if builder == VMAF_BUILDER:
    return vmaf_label_source()
  return f"MOS of the {builder} data set (its published mean opinion scores)"


def model_version(trained: TrainedModel) -> str:
  """A shipped model's id (its name-version, e.g. jaxvqa-vmaf-s-1); for a training run, the run's
  directory name, the step and the weights (the exact weights are `model_id`)."""
  card = shipped_card(trained)
  if card is not None:
    return str(card.get("id", "shipped model without an id"))
  checkpoint = trained.checkpoint
  workdir = Path(checkpoint.path).parent.parent.name
  return f"{workdir} step {checkpoint.step} ({checkpoint.which}, {checkpoint.weights} weights)"

"""Where a training run reports: a JSON-lines file, TensorBoard, and a progress bar on stderr."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from tqdm import tqdm

METRICS_FILE = "metrics.jsonl"


def configure_logging() -> None:
  """INFO for jaxvqa's own messages on stderr; WARNING for absl's, through which Orbax, Grain and
  TFDS report every save and read at INFO (train.py and eval.py)."""
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
  logging.getLogger("absl").setLevel(logging.WARNING)


class RunLog:
  """Context manager; only the chief process (`enabled`) writes anything."""

  def __init__(self, workdir: str | Path, *, enabled: bool, total_steps: int, initial_step: int = 0,
               show_progress: bool = True):
    self.enabled = enabled
    self.workdir = Path(workdir)
    self._file = None
    self._writer = None
    self._bar = None
    if not enabled:
      return
    self.workdir.mkdir(parents=True, exist_ok=True)
    self._file = (self.workdir / METRICS_FILE).open("a")
    from tensorboardX import SummaryWriter  # imported here: only the chief needs it
    self._writer = SummaryWriter(str(self.workdir / "tensorboard"))
    self._bar = tqdm(total=total_steps, initial=initial_step, desc="train", unit="step",
                     disable=not show_progress, dynamic_ncols=True)

  def write(self, step: int, values: dict[str, float], progress: dict[str, float] | None = None) -> None:
    if not self.enabled:
      return
    clean = {k: (v if math.isfinite(v) else None) for k, v in values.items()}
    self._file.write(json.dumps({"step": step, **clean}) + "\n")
    self._file.flush()
    for key, value in values.items():
      if math.isfinite(value):
        self._writer.add_scalar(key, value, step)
    if progress:
      self._bar.set_postfix({k: f"{v:.4g}" for k, v in progress.items()}, refresh=False)

  def advance(self) -> None:
    if self.enabled:
      self._bar.update(1)

  def __enter__(self) -> "RunLog":
    return self

  def __exit__(self, *exc) -> None:
    if not self.enabled:
      return
    self._bar.close()
    self._writer.close()
    self._file.close()

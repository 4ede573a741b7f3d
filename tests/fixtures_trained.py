"""A trained tiny run (workdir with config.json, a best and a latest checkpoint), shared by the
evaluation and scoring tests: `from fixtures_trained import trained_workdir  # noqa: F401`.

Importing the fixture into several test modules gives each module its own session-scoped copy;
the memo below makes them all return the one run, so the tiny model trains once per session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import tiny_demo_settings

_TRAINED: dict[str, Path] = {}


@pytest.fixture(scope="session")
def trained_workdir(demo_cache, tmp_path_factory) -> Path:
  """configs/demo.py at test size, trained 2 steps (one epoch) on 1 device.

  Step 2 ends the first epoch, so the run validates (best checkpoint with its calibration) and
  saves (latest checkpoint), both at step 2.
  """
  if "run" not in _TRAINED:
    from configs import demo as demo_config
    from jaxvqa import trainer

    config = tiny_demo_settings(demo_config.get_config())
    config.data.cache_dir = str(demo_cache)
    workdir = tmp_path_factory.mktemp("trained") / "run"
    run = trainer.Trainer(config, workdir, num_devices=1)
    run.train(stop_after_step=2)
    run.checkpoints.close()
    _TRAINED["run"] = workdir
  return _TRAINED["run"]


def manifest_labels(workdir: Path) -> dict[str, float]:
  """Absolute encode path → VMAF label, read from the run's make-dataset manifest (not from TFDS).

  The labels are rounded to float32, as the data set stores them.
  """
  import json

  import numpy as np

  from jaxvqa import inference
  from jaxvqa.data import demo

  config = inference.load_run_config(workdir)
  manual_dir = demo.ensure_demo_set(config.data.demo, demo.cache_dir(config.data.cache_dir))
  labels = {}
  for line in (manual_dir / "manifest.jsonl").read_text().splitlines():
    record = json.loads(line)
    labels[str(manual_dir / record["path"])] = float(np.float32(record["vmaf"]))
  return labels

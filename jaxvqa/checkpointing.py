"""Orbax checkpoints of a training run: the latest few for resuming, the best one for using.

Layout of a workdir:
  config.json           the full run config (eval.py and `jaxvqa score` rebuild the model from it)
  checkpoints/<step>/   periodic saves, keep-N, each with the train state and its metadata
  best/<step>/          the save with the best validation SRCC (keep 1)

Metadata travels with each save as JSON: the data step to resume the input stream from, the
evaluation metrics and the score calibration. The train state is saved whole (params, EMA params,
optimizer moments, step), so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

CONFIG_FILE = "config.json"
STATE_FIELDS = ("step", "params", "ema_params", "opt_state", "nonfinite_streak")


def _state_tree(state) -> dict[str, Any]:
  return {field: getattr(state, field) for field in STATE_FIELDS}


def _abstract(tree):
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class RunCheckpoints:
  """Saves and restores a run's train state and metadata under `workdir`."""

  def __init__(self, workdir: str | Path, *, keep: int):
    self.workdir = Path(workdir).absolute()
    self.latest = ocp.CheckpointManager(
        self.workdir / "checkpoints",
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        item_names=("state", "meta"))
    self.best = ocp.CheckpointManager(
        self.workdir / "best",
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1, create=True, best_fn=lambda meta: meta["best_metric"], best_mode="max"),
        item_names=("state", "meta"))

  def save(self, state, meta: dict[str, Any], *, best: bool = False) -> None:
    step = int(jax.device_get(state.step))
    manager = self.best if best else self.latest
    args = ocp.args.Composite(
        state=ocp.args.StandardSave(_state_tree(state)), meta=ocp.args.JsonSave(meta))
    if best:
      # orbax's best_fn reads the metrics argument, not the item.
      manager.save(step, args=args, metrics={"best_metric": meta["best_metric"]}, force=True)
    else:
      manager.save(step, args=args, force=True)

  def wait(self) -> None:
    self.latest.wait_until_finished()
    self.best.wait_until_finished()

  def restore_latest(self, state):
    """(state, meta) from the newest periodic save, or (state, None) when there is none."""
    return self._restore(self.latest, self.latest.latest_step(), state)

  def restore_best(self, state):
    return self._restore(self.best, self.best.best_step(), state)

  def _restore(self, manager, step, state):
    if step is None:
      return state, None
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(_abstract(_state_tree(state))), meta=ocp.args.JsonRestore()))
    return state.replace(**restored["state"]), dict(restored["meta"])

  def close(self) -> None:
    self.wait()
    self.latest.close()
    self.best.close()


def save_config(workdir: str | Path, config) -> None:
  path = Path(workdir) / CONFIG_FILE
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(config.to_json_best_effort(indent=2))


def load_config_dict(workdir: str | Path) -> dict[str, Any]:
  path = Path(workdir) / CONFIG_FILE
  if not path.exists():
    raise FileNotFoundError(
        f"{path} not found: --workdir must be the directory a `python train.py` run wrote")
  return json.loads(path.read_text())


def load_params(workdir: str | Path, *, which: str = "best", ema: bool = True) -> tuple[Any, dict]:
  """(params, meta) of a finished run, without rebuilding the optimizer.

  which: "best" (highest validation SRCC) or "latest". ema: take the EMA copy of the weights.
  """
  workdir = Path(workdir).absolute()
  directory = workdir / ("best" if which == "best" else "checkpoints")
  manager = ocp.CheckpointManager(directory, item_handlers={
      "state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()})
  step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(f"no checkpoint under {directory}: did the training run save one?")
  # Restore onto this process's first device, whatever mesh saved it: a run trained on 8 GPUs
  # is scored on a laptop, and Orbax refuses the saved sharding on a different topology.
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(
      lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device),
      manager.item_metadata(step)["state"])
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
  manager.close()
  state = restored["state"]
  return (state["ema_params"] if ema else state["params"]), dict(restored["meta"])

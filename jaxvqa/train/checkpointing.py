"""Orbax checkpoints of a training run: the latest few for resuming, the best one for using.

Layout of a workdir:
  config.json           the full run config (eval.py and `jaxvqa score` rebuild the model from it)
  checkpoints/<step>/   periodic saves, keep-N, each with the train state and its metadata
  best/<step>/          the save with the best validation SRCC (keep 1)
  train.lock            held (flock) by the train.py process writing the workdir

Metadata travels with each save as JSON: the data step to resume the input stream from, the
evaluation metrics and the score calibration. The train state is saved whole (params, EMA params,
optimizer moments, step) in both kinds of save, so a run resumes from whichever is newer and
continues exactly where it stopped.

Each save also records a digest of its weights (`weights_digest`: sha256 of every array's name,
dtype, shape and bytes) under meta["weights_sha256"], one per train-state field, and the model
directories the K-fold protocol ships (params.msgpack + model.json) carry one in model.json. Every
reader checks it (`check_weights`): a save whose bytes changed after it was written, or whose
weights are not all finite, is refused. A save from before digests existed loads with a warning.

A checkpoint that cannot be read raises CheckpointError with one line naming the directory and
what is wrong; train.py, eval.py and the jaxvqa commands print that line and exit 2.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Iterator

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxvqa.train import replicated_arrays

log = logging.getLogger(__name__)

replicated_arrays.write_replicated_arrays_whole()

CONFIG_FILE = "config.json"
LOCK_FILE = "train.lock"
STATE_FIELDS = ("step", "params", "ema_params", "opt_state")
WHICH = ("best", "latest")
# Where a save's meta, and a shipped model's model.json, record the digest of the weights.
DIGEST_KEY = "weights_sha256"
# Config fields a resumed run may change: where files are and how progress shows, not what the
# run trains or how.
RESUMABLE_CHANGES = (
    "workdir",
    "data.cache_dir",
    "data.num_workers",
    "train.progress_bar",
    "train.resume_with_changed_config",
    # How the window attention runs, not what the model is: a run begun on "xla" resumes on "auto".
    "model.backbone.attention_impl",
)


class CheckpointError(Exception):
  """A run directory or checkpoint that cannot be used; the message is one line naming it."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
  """No run, or no checkpoint, where one was asked for (also a FileNotFoundError for old callers)."""


class WorkdirConfigError(CheckpointError):
  """A workdir whose run was started with another config; the message lists the fields."""


class WorkdirLockedError(RuntimeError):
  """Another live process holds the workdir's lock; the message names the workdir."""


# TensorStore's status codes for a file that is gone, cut short or garbled.
_DATA_FAULTS = {
    "NOT_FOUND": "missing data file",
    "OUT_OF_RANGE": "truncated data file",
    "DATA_LOSS": "corrupt data file",
    # What OCDBT says of a data file that is gone: its chunks read as an empty zstd stream.
    "FAILED_PRECONDITION": "unreadable data",
}
_STATUS = re.compile(r"([A-Z_]+): ")


def _first_line(error: BaseException) -> str:
  text = str(error).split(" [tensorstore_spec=")[0].strip()
  return text.splitlines()[0] if text else type(error).__name__


def _unparsable_json(step_dir: Path) -> str | None:
  """The first metadata file under `step_dir` that is not valid JSON, described; None if all are.

  json's own error names no file ("Unterminated string starting at ..."), so look for it.
  """
  for path in sorted(step_dir.rglob("*")):
    inside = path.relative_to(step_dir).parts
    if (
        not path.is_file()
        or "d" in inside[:-1]
        or path.name in ("manifest.ocdbt", "commit_success.txt")
    ):
      continue  # array data and OCDBT indexes are binary
    try:
      json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as error:
      return f"{path} is not valid JSON (truncated or overwritten: {_first_line(error)})"
  return None


def _missing_part(step_dir: Path) -> str | None:
  """The first file or directory every save of RunCheckpoints holds that `step_dir` lacks."""
  for part in ("state", "meta", "state/_METADATA", "meta/metadata"):
    if not (step_dir / part).exists():
      return f"{step_dir / part} is missing"
  return None


def _storage_fault(error: BaseException | None) -> str | None:
  """The first line of the TensorStore error in `error`'s chain ("OUT_OF_RANGE: Error reading
  ..."), or None. Orbax raises a bare Exception around it whose text is the whole store spec."""
  while error is not None:
    text = _first_line(error)
    status = _STATUS.match(text)
    if status and status.group(1) in _DATA_FAULTS:
      return text
    error = error.__cause__ or error.__context__
  return None


def _describe_damage(step_dir: Path, error: BaseException) -> str:
  missing = _missing_part(step_dir)
  if missing:
    return missing
  if isinstance(error, json.JSONDecodeError):
    return _unparsable_json(step_dir) or f"invalid JSON: {_first_line(error)}"
  text = _storage_fault(error) or _first_line(error)
  status = _STATUS.match(text)
  files = re.findall(r'local file "([^"]+)"', text)
  if not (status and status.group(1) in _DATA_FAULTS and files):
    return text
  fault = _DATA_FAULTS[status.group(1)]
  detail = text.rsplit(f'local file "{files[-1]}"', 1)[1].lstrip(": ").split(";")[0]
  array = re.search(r'Error reading "([^"/]+)', text)
  if array and files[-1].endswith("/"):  # names the store's directory: the array says what is lost
    return f"{fault} of {array.group(1)} in {files[-1]}" + (f" ({detail})" if detail else "")
  return f"{fault} {files[-1]}" + (f" ({detail})" if detail else "")


def _restore_or_explain(manager: ocp.CheckpointManager, step: int, args) -> Any:
  step_dir = Path(manager.directory) / str(step)
  advice = "; move that directory away to use the run's previous save"
  missing = _missing_part(step_dir)  # checked first: Orbax logs warnings of its own about it
  if missing:
    raise CheckpointError(f"checkpoint {step_dir} is damaged: {missing}{advice}")
  try:
    return manager.restore(step, args=args)
  except Exception as error:  # noqa: BLE001 — Orbax wraps TensorStore's errors in bare Exception
    if not isinstance(error, (OSError, ValueError, KeyError, TypeError)) and not _storage_fault(
        error
    ):
      raise
    raise CheckpointError(
        f"checkpoint {step_dir} is damaged: {_describe_damage(step_dir, error)}{advice}"
    ) from error


def state_tree(state) -> dict[str, Any]:
  return {field: getattr(state, field) for field in STATE_FIELDS}


def _abstract(tree):
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def on_first_device(tree):
  """A restore target for `tree` (arrays or shapes) on this process's first device, whatever mesh
  saved it: Orbax refuses a saved sharding on another topology."""
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(
      lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device), tree
  )


def _leaf_name(path) -> str:
  """ "a/b/0" for a tree path, whatever the containers: a restored tree may hold dicts where the
  saved one held named tuples or FrozenDicts, and its digest must not change with that."""
  return "/".join(
      str(next(getattr(entry, name) for name in ("key", "name", "idx") if hasattr(entry, name)))
      for entry in path
  )


def _host_arrays(tree) -> list[tuple[str, np.ndarray]]:
  """(name, host array) of every leaf of `tree`, sorted by name."""
  leaves = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      from jax.experimental import multihost_utils

      leaf = multihost_utils.process_allgather(leaf, tiled=True)
    leaves.append((_leaf_name(path), np.ascontiguousarray(jax.device_get(leaf))))
  return sorted(leaves, key=lambda named: named[0])


def weights_digest(tree) -> str:
  """ "sha256:" and the hex sha256 of every array of `tree`: its name, dtype, shape and bytes."""
  digest = hashlib.sha256()
  for name, array in _host_arrays(tree):
    digest.update(f"{name} {array.dtype.str} {array.shape}\n".encode())
    digest.update(array.tobytes())
  return f"sha256:{digest.hexdigest()}"


def check_weights(tree, recorded: str | None, what: str, advice: str) -> None:
  """Refuses weights that are not the ones saved, or not all finite: CheckpointError in one line
  "`what` ...; `advice`". recorded: the digest written at save time; None for a save made before
  digests existed, which loads with a warning (its bytes cannot be checked)."""
  if recorded is None:
    log.warning(
        "%s records no weights digest (saved by an older jaxvqa): its bytes cannot be checked",
        what,
    )
  else:
    actual = weights_digest(tree)
    if actual != recorded:
      raise CheckpointError(
          f"{what} has changed since it was saved (weights {actual[:23]}…, saved as "
          f"{recorded[:23]}…); {advice}"
      )
  nonfinite = [
      (name, int(np.size(array) - np.count_nonzero(np.isfinite(array))))
      for name, array in _host_arrays(tree)
      if jax.numpy.issubdtype(array.dtype, jax.numpy.inexact) and not np.isfinite(array).all()
  ]
  if nonfinite:
    total = sum(count for _, count in nonfinite)
    raise CheckpointError(
        f"{what} holds non-finite weights ({total} NaN or infinite values, first in "
        f"{nonfinite[0][0]}) and cannot score; {advice}"
    )


class RunCheckpoints:
  """Saves and restores a run's train state and metadata under `workdir`."""

  def __init__(self, workdir: str | Path, *, keep: int):
    self.workdir = Path(workdir).absolute()
    self.latest = ocp.CheckpointManager(
        self.workdir / "checkpoints",
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        item_names=("state", "meta"),
    )
    self.best = ocp.CheckpointManager(
        self.workdir / "best",
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1, create=True, best_fn=lambda meta: meta["best_metric"], best_mode="max"
        ),
        item_names=("state", "meta"),
    )

  def save(self, state, meta: dict[str, Any], *, best: bool = False) -> None:
    step = int(jax.device_get(state.step))
    manager = self.best if best else self.latest
    tree = state_tree(state)
    meta = {**meta, DIGEST_KEY: {field: weights_digest(value) for field, value in tree.items()}}
    args = ocp.args.Composite(state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta))
    if best:
      # orbax's best_fn reads the metrics argument, not the item.
      manager.save(step, args=args, metrics={"best_metric": meta["best_metric"]}, force=True)
    else:
      manager.save(step, args=args, force=True)

  def wait(self) -> None:
    self.latest.wait_until_finished()
    self.best.wait_until_finished()

  def latest_step(self) -> int | None:
    """The step of the newest periodic save."""
    return self.latest.latest_step()

  def restore_newest(self, state):
    """(state, meta) from the newest save, periodic or best, or (state, None) when there is none.

    A best save is newer than every periodic one when a run is killed after a validation and
    before its next periodic save. Resuming from the older periodic save would replay to that
    step and save the best again, which Orbax refuses (StepAlreadyExistsError), on every later
    start. The best save holds the whole train state, so the run resumes from it instead. meta
    holds "best_srcc" either way.
    """
    latest, best = self.latest.latest_step(), self.best.latest_step()
    if best is not None and (latest is None or best > latest):
      state, meta = self._restore(self.best, best, state)
      return state, {**meta, "best_srcc": meta["best_metric"]}
    return self._restore(self.latest, latest, state)

  def restore_best(self, state):
    return self._restore(self.best, self.best.best_step(), state)

  def _restore(self, manager, step, state):
    if step is None:
      return state, None
    restored = _restore_or_explain(
        manager,
        step,
        ocp.args.Composite(
            state=ocp.args.StandardRestore(_abstract(state_tree(state))),
            meta=ocp.args.JsonRestore(),
        ),
    )
    meta = dict(restored["meta"])
    what = f"checkpoint {Path(manager.directory) / str(step)}"
    advice = "move that directory away to use the run's previous save"
    if DIGEST_KEY in meta:
      for field, value in restored["state"].items():
        check_weights(value, meta[DIGEST_KEY][field], what, advice)
    else:
      check_weights(restored["state"], None, what, advice)
    return state.replace(**restored["state"]), meta

  def close(self) -> None:
    self.wait()
    self.latest.close()
    self.best.close()


def save_config(workdir: str | Path, config) -> None:
  path = Path(workdir) / CONFIG_FILE
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(config.to_json_best_effort(indent=2))


def load_config_dict(workdir: str | Path) -> dict[str, Any]:
  """WORKDIR/config.json as a dict; CheckpointError (one line) when it is missing or unreadable."""
  path = Path(workdir) / CONFIG_FILE
  if not path.is_file():
    raise CheckpointNotFoundError(
        f"{path} not found: {workdir} is not a train.py workdir (--workdir must be the directory "
        "a `python train.py` run wrote)"
    )
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError) as error:
    raise CheckpointError(
        f"{path} cannot be read ({_first_line(error)}): restore it from the run's copy or "
        "train again"
    ) from error


def check_resumed_config(workdir: str | Path, config) -> None:
  """Refuses to resume the run in `workdir` with a config other than its config.json's.

  Raises WorkdirConfigError naming the fields that differ: as a run of another model when a
  model.* or init.* field does; otherwise unless config.train.resume_with_changed_config is set,
  which resumes with the new config on purpose (logged). A field config.json lacks (added to
  jaxvqa after the run started) is not a change.
  """
  from jaxvqa.train.run_log import flatten_config

  if not (Path(workdir) / CONFIG_FILE).is_file():
    return
  saved = flatten_config(load_config_dict(workdir))
  now = flatten_config(json.loads(config.to_json_best_effort()))
  changed = [
      field
      for field in sorted(saved)
      if field not in RESUMABLE_CHANGES and saved[field] != now.get(field, "(no such field)")
  ]
  if not changed:
    return
  listed = "; ".join(
      f"{field}: {saved[field]!r} in the run, {now.get(field, '(no such field)')!r} now"
      for field in changed[:4]
  ) + (f"; and {len(changed) - 4} more" if len(changed) > 4 else "")
  if any(field.startswith(("model.", "init.")) for field in changed):
    raise WorkdirConfigError(
        f"{workdir} holds a run of another model ({listed}): choose another --workdir for this "
        "config, or run that run's own config to resume it"
    )
  if config.train.get("resume_with_changed_config", False):
    log.warning("resuming %s with a changed config (%s)", workdir, listed)
    return
  raise WorkdirConfigError(
      f"{workdir} holds a run with another config ({listed}): rerun with the run's own config "
      "to resume it, choose another --workdir to start a new run, or add "
      "--config.train.resume_with_changed_config=True to resume with this config on purpose"
  )


def load_params(workdir: str | Path, *, which: str = "best", ema: bool = True) -> tuple[Any, dict]:
  """(params, meta) of a finished run, without rebuilding the optimizer.

  which: "best" (highest validation SRCC) or "latest". ema: take the EMA copy of the weights.
  Only those weights are read (an Orbax partial restore): the other copy and the optimizer's
  moments, twice the weights again for Adam, stay on disk.
  Raises CheckpointError (CheckpointNotFoundError when there is nothing to load) in one line.
  """
  if which not in WHICH:
    raise ValueError(f"which={which!r}: must be one of {WHICH}")
  workdir = Path(workdir).absolute()
  directory = workdir / ("best" if which == "best" else "checkpoints")
  if not directory.is_dir():
    what = "a train.py workdir" if (workdir / CONFIG_FILE).is_file() else "not a train.py workdir"
    raise CheckpointNotFoundError(
        f"no checkpoint under {directory} ({workdir} is {what}): did the training run save one?"
    )
  wanted = "ema_params" if ema else "params"
  manager = ocp.CheckpointManager(
      directory,
      item_handlers={"state": ocp.PyTreeCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()},
  )
  try:
    step = manager.latest_step()
    if step is None:
      raise CheckpointNotFoundError(
          f"no checkpoint under {directory}: did the training run save one?"
      )
    step_dir = directory / str(step)
    missing = _missing_part(step_dir)  # checked first: Orbax logs warnings of its own about it
    if missing:
      raise CheckpointError(
          f"checkpoint {step_dir} is damaged: {missing}; use the run's other "
          "checkpoint (best or latest) or train again"
      )
    try:
      saved = manager.item_metadata(step)["state"]
    except (OSError, ValueError, KeyError, TypeError) as error:
      raise CheckpointError(
          f"checkpoint {step_dir} is damaged: {_describe_damage(step_dir, error)}; use the run's "
          "other checkpoint (best or latest) or train again"
      ) from error
    # Onto this process's first device: a run trained on 8 GPUs is scored on a laptop.
    target = {wanted: on_first_device(saved[wanted])}
    restored = _restore_or_explain(
        manager,
        step,
        ocp.args.Composite(
            state=ocp.args.PyTreeRestore(
                item=target,
                restore_args=ocp.checkpoint_utils.construct_restore_args(target),
                partial_restore=True,
            ),
            meta=ocp.args.JsonRestore(),
        ),
    )
  finally:
    manager.close()
  params, meta = restored["state"][wanted], dict(restored["meta"])
  check_weights(
      params,
      (meta.get(DIGEST_KEY) or {}).get(wanted),
      f"checkpoint {step_dir}",
      "use the run's other checkpoint (best or latest) or train again",
  )
  return params, meta


@contextlib.contextmanager
def lock_workdir(workdir: str | Path) -> Iterator[None]:
  """Holds WORKDIR/train.lock exclusively, or raises WorkdirLockedError naming the workdir.

  flock rather than a PID file: the OS drops the lock when its holder dies, however it dies, so a
  killed run never leaves a stale lock. Re-entrant within a process (train_and_evaluate holds it
  around Trainer.train, which takes it as well); the lock is per process, not per thread.
  """
  path = (Path(workdir) / LOCK_FILE).absolute()
  if path in _HELD_LOCKS:
    _HELD_LOCKS[path][1] += 1
  else:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      handle.seek(0)
      holder = handle.read().strip() or "?"
      handle.close()
      raise WorkdirLockedError(
          f"{Path(workdir)} is in use by another train.py process (pid {holder}, holding {path}); "
          "wait for it to end or choose another --workdir"
      ) from None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    _HELD_LOCKS[path] = [handle, 1]
  try:
    yield
  finally:
    _HELD_LOCKS[path][1] -= 1
    if _HELD_LOCKS[path][1] == 0:
      _HELD_LOCKS.pop(path)[0].close()


_HELD_LOCKS: dict[Path, list] = {}  # lock file -> [open handle, depth]

"""A finished training run, loaded for inference: its model, weights, frame options and calibration.

    WORKDIR/config.json ──▶ model + frame options
    WORKDIR/best|checkpoints/<step> ──▶ weights (EMA or raw) + calibration (bounded logistic)
    clips uint8 [N, T, S, S, 3] ──padded batches, sharded over the mesh──▶ raw scores [N]
      ──calibration──▶ scores on the label's scale (VMAF 0–100 for compressed sets)

`eval.py` and `jaxvqa score` both start here, so both see the same model and the same scores.
This module and `jaxvqa.scoring` import neither TFDS nor Grain: scoring must run on inference
machines that carry only JAX, Orbax, decord and Pillow.

Batches are sized per device: a call scores `per_device_batch` clips on each device, the last
batch padded with zero clips whose scores are dropped. Every call then runs the same per-device
program on the same shapes, so a clip's score is bit-identical whether it is scored alone or among
many, and on 1 device or 8 (the model has no cross-example operation at inference). A global batch
size split differently over devices would change XLA's blocking and the last bits of the scores.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import jax
import ml_collections
import numpy as np

from jaxvqa.evaluate import calibration
from jaxvqa.train import checkpointing, parallel, steps
from jaxvqa.data import video
from jaxvqa.models import vqa

WHICH_CHECKPOINTS = ("best", "latest")
# Where the shipped model lives in the package (docs/MODEL.md), as `jaxvqa.kfold.ship.ship_model`
# writes it; pyproject.toml's package-data puts it in the wheel.
SHIPPED_DIR = Path(__file__).parents[1] / "shipped"
SHIPPED_PARAMS, SHIPPED_CARD = "params.msgpack", "model.json"
NO_SHIPPED_MODEL = (
    "this jaxvqa {version} installation has no shipped model ({directory} lacks model.json: "
    "reinstall jaxvqa, or build it as docs/MODEL.md says): pass the workdir of a training run "
    "instead, e.g. jaxvqa.load('workdirs/demo') after `python train.py --config configs/demo.py`"
)
# Clips per device per call, for `jaxvqa score` and `eval.py` alike (8 clips of 8 frames = 64
# frames, the batch the speed targets are measured at).
DEFAULT_PER_DEVICE_BATCH = 8


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
  """Which saved weights were loaded."""

  path: Path  # the Orbax step directory, e.g. WORKDIR/best/120
  which: str  # "best" (highest validation SRCC) or "latest"
  step: int  # training step of the save
  weights: str  # "ema" or "raw"

  def describe(self) -> str:
    return f"{self.path} (step {self.step}, {self.which}, {self.weights} weights)"

  def to_dict(self) -> dict[str, Any]:
    return {"path": str(self.path), "which": self.which, "step": self.step, "weights": self.weights}


def describe_model(config: ml_collections.ConfigDict) -> str:
  """One line naming the architecture and input of `config` (what produced a score)."""
  model, data = config.model, config.data
  parts = [
      f"detail statistics {model.detail_features} filters × depth {model.get('detail_depth', 1)}"
      if model.get("detail_features", 0)
      else "",
      f"scene statistics over {model.statistics_region}px regions"
      if model.get("statistics_region", 0)
      else "",
  ]
  statistics = " + ".join(part for part in parts if part)
  if model.get("embedding_in_head", True):
    backbone = model.backbone
    if backbone.get("name", "swinv2") == "swinv2":
      spatial = (
          f"SwinV2 embed_dim={backbone.embed_dim} depths={tuple(backbone.depths)} "
          f"heads={tuple(backbone.num_heads)} window={backbone.window_size}"
      )
    else:
      spatial = {"efficientnet_lite0": "EfficientNet-Lite0"}.get(backbone.name, backbone.name)
    network = (
        f"{spatial}; fusion out_dim={model.fusion.out_dim}; temporal width={model.temporal.width}"
        + (f"; {statistics}" if statistics else "")
    )
  else:  # the head reads the statistics alone (models/vqa.py: embedding_in_head)
    network = f"{statistics} only (no backbone)"
  sampling, grid = data.sampling, data.get("fragment_grid", 1)
  if sampling == "fragments":
    sampling = f"{grid}×{grid} fragments" if grid > 1 else "one native crop"
  align = data.get("fragment_align", 1)
  sampling += f", aligned to {align}px" if align > 1 else ""
  return f"{network}; {data.num_frames} frames of {data.frame_size}px ({sampling}); {model.dtype}"


class TrainedModel:
  """A run's model with its weights placed on a mesh; scores batches of prepared clips."""

  def __init__(
      self,
      config: ml_collections.ConfigDict,
      params: Any,
      meta: Mapping[str, Any],
      checkpoint: CheckpointInfo,
      *,
      num_devices: int | None = None,
  ):
    self.config = config
    self.checkpoint = checkpoint
    self.frames = video.FrameOptions.from_data_config(config.data)
    # The window-attention path is this machine's to choose, not the run's: a run recorded with
    # "xla" takes the fused kernel on a GPU too (vqa.attention_impl_to_run).
    self.model = vqa.build_vqa_model(config.model, attention_impl=vqa.attention_impl_to_run())
    self.mesh = parallel.make_mesh(num_devices)
    self.params = parallel.replicate(params, self.mesh)
    # The best checkpoint carries the calibration fitted on the validation split; a periodic
    # save has none, and then scores stay on the model's raw scale.
    self.calibration: calibration.Calibration | None = calibration.from_saved(
        meta.get("calibration")
    )
    self.score_step = steps.jit_score_step(self.model)

  def with_attention(self, attention_impl: str) -> TrainedModel:
    """This model (the same weights, config and identity) on another window-attention path."""
    other = copy.copy(self)
    other.model = vqa.build_vqa_model(self.config.model, attention_impl=attention_impl)
    other.score_step = steps.jit_score_step(other.model)
    return other

  @property
  def num_devices(self) -> int:
    return int(self.mesh.devices.size)

  @property
  def clip_shape(self) -> tuple[int, int, int, int]:
    """(T, S, S, 3) of one prepared clip."""
    return (self.frames.num_frames, self.frames.size, self.frames.size, 3)

  def describe(self) -> str:
    return describe_model(self.config)

  @functools.cached_property
  def identity(self) -> str:
    """A fingerprint of everything a score depends on: "sha256:" and 16 hex digits.

    It hashes the weights themselves (so the EMA and raw copies, or a retrained run in the same
    workdir, differ), the model config, the frame options and the calibration, and nothing else:
    a data-path override or another device count keeps it. `jaxvqa score` writes it on every row,
    and `--resume` refuses to extend rows with another.
    """
    digest = hashlib.sha256(
        json.dumps(
            {
                "model": self.config.model.to_dict(),
                "frames": dataclasses.asdict(self.frames),
                "calibration": self.calibration.to_dict() if self.calibration is not None else None,
            },
            sort_keys=True,
            default=str,
        ).encode()
    )
    for path, leaf in jax.tree_util.tree_flatten_with_path(self.params)[0]:
      array = np.ascontiguousarray(jax.device_get(leaf))
      digest.update(f"{jax.tree_util.keystr(path)} {array.dtype} {array.shape}".encode())
      digest.update(array.tobytes())
    return f"sha256:{digest.hexdigest()[:16]}"

  def global_batch_size(self, per_device_batch: int) -> int:
    """Clips per call over the whole mesh."""
    if per_device_batch < 1:
      raise ValueError(f"per-device batch must be >= 1, got {per_device_batch}")
    return per_device_batch * self.num_devices

  def dispatch(self, clips: np.ndarray, per_device_batch: int) -> jax.Array:
    """Starts scoring up to `per_device_batch` × devices clips; returns at once (JAX dispatch is
    asynchronous).

    clips: uint8 [n, T, S, S, 3]. Returns raw scores [per_device_batch × devices] on the devices;
    rows n and beyond score the zero padding and must be ignored.
    """
    batch_size = self.global_batch_size(per_device_batch)
    if len(clips) > batch_size:
      raise ValueError(f"{len(clips)} clips do not fit a batch of {batch_size}")
    padded = np.zeros((batch_size, *self.clip_shape), np.uint8)
    padded[: len(clips)] = clips
    return self.score_step(self.params, parallel.global_batch({"frames": padded}, self.mesh))

  def raw_scores(
      self, clips: np.ndarray, per_device_batch: int = DEFAULT_PER_DEVICE_BATCH
  ) -> np.ndarray:
    """float64 [N] raw scores of clips uint8 [N, T, S, S, 3]."""
    batch_size = self.global_batch_size(per_device_batch)
    pending = [
        (start, self.dispatch(clips[start : start + batch_size], per_device_batch))
        for start in range(0, len(clips), batch_size)
    ]
    scores = np.zeros(len(clips), np.float64)
    for start, device_scores in pending:
      count = min(batch_size, len(clips) - start)
      scores[start : start + count] = np.asarray(device_scores, np.float64)[:count]
    return scores

  def calibrate(self, raw: np.ndarray) -> np.ndarray:
    """Raw scores → the label's scale; unchanged (as float64) when the checkpoint has no calibration."""
    if self.calibration is None:
      return np.asarray(raw, np.float64)
    return calibration.calibrate(raw, self.calibration)

  @property
  def worst_score(self) -> float | None:
    """The worst score on the label's scale: where the calibration takes the lowest raw output
    (its range's bottom, or its top for a lower-is-better scale such as DMOS). What a file that
    the model cannot judge scores (`scoring.validity.withholds_measurement`); None without a
    calibration (or with an unbounded legacy line), where raw output has no worst end."""
    bounds = None if self.calibration is None else (self.calibration.low, self.calibration.high)
    if bounds is None or not np.isfinite(bounds).all():
      return None
    lowest, highest = calibration.calibrate(np.array([-np.inf, np.inf]), self.calibration)
    return bounds[0] if lowest <= highest else bounds[1]


def load_trained_model(
    workdir: str | Path,
    *,
    which: str = "best",
    ema: bool = True,
    num_devices: int | None = None,
    config: ml_collections.ConfigDict | None = None,
) -> TrainedModel:
  """Loads the run in `workdir` (what `python train.py` wrote).

  which: "best" or "latest". ema: the EMA copy of the weights (what validation chose) or the raw
  ones. config: the run's config with overrides applied (default: WORKDIR/config.json as saved).
  Raises FileNotFoundError naming what is missing.
  """
  if which not in WHICH_CHECKPOINTS:
    raise ValueError(f"which must be one of {WHICH_CHECKPOINTS}, got {which!r}")
  workdir = Path(workdir).absolute()
  if config is None:
    config = load_run_config(workdir)
  task = config.model.task
  if task != "vqa":
    raise ValueError(
        f"{workdir} is a config.model.task={task!r} run (an image-quality pre-training run scores "
        "images, not videos); score and evaluate the video run that starts from it instead"
    )
  params, meta = checkpointing.load_params(workdir, which=which, ema=ema)
  step = int(meta["step"])
  directory = workdir / ("best" if which == "best" else "checkpoints")
  checkpoint = CheckpointInfo(
      path=directory / str(step), which=which, step=step, weights="ema" if ema else "raw"
  )
  return TrainedModel(config, params, meta, checkpoint, num_devices=num_devices)


def load_run_config(workdir: str | Path) -> ml_collections.ConfigDict:
  """WORKDIR/config.json as a ConfigDict (lists where the run had tuples; builders accept both)."""
  return ml_collections.ConfigDict(checkpointing.load_config_dict(workdir))


def read_model_directory(directory: str | Path | None = None) -> tuple[dict, Any]:
  """(card, params) of the model shipped inside jaxvqa (default) or of a directory holding one:
  model.json (id, config, calibration, provenance) as a dict, params.msgpack as a tree of arrays.

  Raises checkpointing.CheckpointNotFoundError when the directory holds no shipped model, and
  checkpointing.CheckpointError when a file is damaged, the weights are not those model.json's
  digest records, or not all finite.
  """
  from flax import serialization

  if directory is None and not (SHIPPED_DIR / SHIPPED_CARD).is_file():
    from jaxvqa import __version__

    raise checkpointing.CheckpointNotFoundError(
        NO_SHIPPED_MODEL.format(version=__version__, directory=SHIPPED_DIR)
    )
  directory = Path(directory or SHIPPED_DIR).absolute()
  card_path, params_path = directory / SHIPPED_CARD, directory / SHIPPED_PARAMS
  for path in (card_path, params_path):
    if not path.is_file():
      raise checkpointing.CheckpointNotFoundError(
          f"{directory} holds no shipped model: {path.name} is missing (a shipped model is the "
          "model.json and params.msgpack that `python train.py --config configs/kfold.py` writes "
          "in WORKDIR/shipped)"
      )
  try:
    card = json.loads(card_path.read_text())
    card["config"]["model"]  # every card has one; a KeyError here is a damaged card
    params = serialization.msgpack_restore(params_path.read_bytes())
  except (ValueError, KeyError, TypeError) as error:
    raise checkpointing.CheckpointError(f"{directory}: damaged shipped model ({error})") from error
  checkpointing.check_weights(
      params,
      card.get(checkpointing.DIGEST_KEY),
      f"the model in {directory} ({SHIPPED_PARAMS})",
      "reinstall jaxvqa, or copy the model directory again from where it was made",
  )
  # Weights stored in bfloat16 (model.json's weights_dtype) are computed with in float32.
  params = jax.tree.map(
      lambda leaf: np.asarray(leaf, np.float32)
      if jax.numpy.issubdtype(leaf.dtype, np.floating)
      else leaf,
      params,
  )
  return card, params


def mismatched_params(expected: Any, params: Any) -> list[str]:
  """Where the tree `params` does not fit `expected` (arrays or shape structs of the model's
  parameters): one "path: why" line for each leaf missing, extra or of another shape."""
  want = {jax.tree_util.keystr(path): leaf.shape for path, leaf in _flat(expected)}
  have = {jax.tree_util.keystr(path): np.shape(leaf) for path, leaf in _flat(params)}
  return (
      [f"{key}: missing" for key in want if key not in have]
      + [f"{key}: not in the model" for key in have if key not in want]
      + [
          f"{key}: shape {have[key]}, the model wants {want[key]}"
          for key in want
          if key in have and tuple(have[key]) != tuple(want[key])
      ]
  )


def _flat(tree: Any) -> list:
  return jax.tree_util.tree_flatten_with_path(tree)[0]


def load_shipped_model(
    directory: str | Path | None = None, *, num_devices: int | None = None
) -> TrainedModel:
  """The model shipped inside jaxvqa (default), or one that `jaxvqa.kfold.ship.ship_model` wrote in
  `directory` (`read_model_directory`).

  Raises checkpointing.CheckpointNotFoundError when the directory holds no shipped model, and
  checkpointing.CheckpointError when its files do not fit together.
  """
  card, params = read_model_directory(directory)
  directory = Path(directory or SHIPPED_DIR).absolute()
  checkpoint = CheckpointInfo(
      path=directory,
      which=f"shipped {card.get('id', '?')}",
      step=int(card.get("training", {}).get("finetune_steps", 0)),
      weights="ema",
  )
  model = TrainedModel(
      ml_collections.ConfigDict(card["config"]),
      params,
      {"calibration": card.get("calibration")},
      checkpoint,
      num_devices=num_devices,
  )
  if mismatched_params(steps.param_shapes(model.model, model.frames), params):
    raise checkpointing.CheckpointError(
        f"{directory}: the weights in {SHIPPED_PARAMS} do not fit the model that {SHIPPED_CARD} "
        "describes"
    )
  return model


def load_model(
    workdir: str | Path | None = None,
    *,
    which: str = "best",
    ema: bool = True,
    num_devices: int | None = None,
) -> TrainedModel:
  """What `jaxvqa.load`, `jaxvqa score`, `export` and `doctor` load: the shipped model (None), a
  directory holding a shipped model (model.json), or a training run's workdir (`which`, `ema`
  apply to a run only)."""
  if workdir is None or (Path(workdir) / SHIPPED_CARD).is_file():
    return load_shipped_model(workdir, num_devices=num_devices)
  return load_trained_model(workdir, which=which, ema=ema, num_devices=num_devices)

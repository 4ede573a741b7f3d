"""The distillation run: crop bank → teacher and student on the accelerator → Orbax checkpoints →
probes after each chunk → the student's backbone written where `config.init.backbone` reads it.

Run: `python train.py --config configs/distill.py` (train.py hands configs with a `distill` section
here). A run stopped by `train.stop_after_seconds`, a signal or a kill resumes from its newest
checkpoint, and draws the same batches an uninterrupted run would (batches are a function of seed
and step). Outputs in the workdir:

    crops/                  the crop bank (rebuilt only when config.data changes)
    distill/checkpoints/    Orbax: params, EMA params, optimizer state, step
    distill_log.jsonl       one line per logged step and per probe
    backbone/               the EMA student's SwinV2 (`jaxvqa convert-weights` layout: params/ and
                            model.json), rewritten at every stop; `--config.init.backbone=` reads it
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvqa.train import checkpointing, optim, parallel, run_log, steps
from jaxvqa.config import ConfigError, require
from jaxvqa.distill import crops as crops_lib
from jaxvqa.distill import objective, probes
from jaxvqa.distill.student import DistillStudent, teacher_targets
from jaxvqa.models import vqa

log = logging.getLogger(__name__)

BACKBONE_DIR = "backbone"
LOG_FILE = "distill_log.jsonl"
PROBE_TRAIN_CROPS = 2048  # training crops the linear probe is fitted on


def validate_config(config) -> None:
  """Raises ConfigError naming the first bad field of a distillation config."""
  data = config.data
  require(
      data.crop_size % 32 == 0, "data.crop_size", f"must be a multiple of 32, got {data.crop_size}"
  )
  require(
      data.package_photos or data.photo_dirs or data.decoded_dir,
      "data.photo_dirs",
      "no images: give data.photo_dirs (e.g. a `jaxvqa fetch-photos --out` directory), "
      "data.decoded_dir, or set data.package_photos=True",
  )
  require(0 <= data.jpeg_fraction <= 1, "data.jpeg_fraction", "must be in [0, 1]")
  require(0 < data.held_out_fraction < 1, "data.held_out_fraction", "must be in (0, 1)")
  require(config.loss.temperature > 0, "loss.temperature", "must be > 0")
  for field in ("optim.steps", "optim.batch_size", "optim.learning_rate", "train.log_every_steps"):
    section, key = field.split(".")
    require(config[section][key] > 0, field, f"must be > 0, got {config[section][key]!r}")
  if config.get("iqa") and config.iqa.steps > 0:  # checked now, not after the distillation
    from jaxvqa.distill import iqa_stage

    iqa_stage.validate_config(config.iqa, data.crop_size)


def crop_options(data_config) -> crops_lib.CropOptions:
  return crops_lib.CropOptions(
      size=data_config.crop_size,
      crops_per_scale=data_config.crops_per_scale,
      scales=tuple(float(s) for s in data_config.scales),
      jpeg_fraction=data_config.jpeg_fraction,
      crops_per_encode=data_config.crops_per_encode,
      held_out_fraction=data_config.held_out_fraction,
  )


def photo_list(data_config) -> list[Path]:
  """The photographs config.data names: its directories', then scikit-image's when asked."""
  photos = crops_lib.list_images([d for d in data_config.photo_dirs.split(",") if d.strip()])
  if data_config.package_photos:
    photos += crops_lib.package_photos()
  return photos


def load_bank(config, workdir: Path) -> crops_lib.CropBank:
  """The crop bank of config.data, cut once and kept in WORKDIR/crops."""
  options = crop_options(config.data)
  directory = workdir / "crops"
  photos = photo_list(config.data)
  sources = [str(p) for p in photos] + [config.data.decoded_dir]
  bank = crops_lib.load_bank(directory, options, sources)
  if bank is not None:
    return bank
  decoded = None
  if config.data.decoded_dir:
    from jaxvqa.data import decoded as decoded_lib

    decoded = decoded_lib.load(config.data.decoded_dir)
  started = time.perf_counter()
  bank = crops_lib.build_bank(
      photos, options, decoded=decoded, seed=config.seed, jobs=config.data.jobs or os.cpu_count()
  )
  log.info(
      "crop bank: %d crops of %d px from %d images (%d held out) in %.0f s",
      len(bank),
      options.size,
      len(bank.names),
      int(np.unique(bank.image[bank.held_out]).size),
      time.perf_counter() - started,
  )
  crops_lib.save_bank(bank, directory, options, sources)
  return bank


def load_teacher(teacher_config):
  """(module, variables) of the frozen teacher config.teacher names."""
  require(
      teacher_config.name == "efficientnet_lite0",
      "teacher.name",
      f"unknown teacher {teacher_config.name!r}; known: 'efficientnet_lite0'",
  )
  from jaxvqa.models import efficientnet_weights

  return efficientnet_weights.load_lite0()


class DistillRun:
  """One distillation run over `bank` (see the module docstring)."""

  def __init__(self, config, bank: crops_lib.CropBank, teacher):
    self.config = config
    self.teacher_module, self.teacher_variables = teacher
    self.mesh = parallel.make_mesh()
    parallel.check_batch_size(config.optim.batch_size, self.mesh, "optim.batch_size")
    size = config.data.crop_size
    probe_shape = jax.eval_shape(
        lambda: self.teacher_module.apply(
            self.teacher_variables, jnp.zeros((1, size, size, 3), jnp.float32)
        )
    )
    channels = tuple(t.shape[-1] for t in teacher_targets(probe_shape))
    self.student = DistillStudent(
        backbone=vqa.build_backbone(config.model),
        teacher_channels=channels,
        num_classes=probe_shape.logits.shape[-1],
    )
    self.train_rows = np.flatnonzero(~bank.held_out)
    self.held_out_rows = np.flatnonzero(bank.held_out)
    if len(self.train_rows) == 0:
      raise ConfigError("data.held_out_fraction: every image is held out; nothing to train on")
    self.crops = parallel.replicate(jnp.asarray(np.asarray(bank.crops)), self.mesh)
    self.tx = optim.build_optimizer(
        dict(
            learning_rate=config.optim.learning_rate,
            backbone_lr_multiplier=1.0,
            weight_decay=config.optim.weight_decay,
            warmup_epochs=min(config.optim.warmup_steps, config.optim.steps // 2),
            epochs=config.optim.steps,
            grad_clip_norm=config.optim.grad_clip_norm,
        ),
        1,
        freeze_backbone=False,
    )

  @functools.cached_property
  def programs(self) -> "Programs":
    loss = self.config.loss
    return Programs(
        self.student,
        self.teacher_module,
        float(loss.feature),
        float(loss.classes),
        float(loss.temperature),
        float(self.config.optim.ema_decay),
    )

  def init_state(self) -> steps.TrainState:
    params = steps.on_host(
        _init_params, self.student, self.config.data.crop_size, jax.random.PRNGKey(self.config.seed)
    )
    return parallel.replicate(steps.TrainState.create(params, self.tx), self.mesh)

  def train_step(self, state, rows, flips, base_rng):
    return _train_step(
        self.programs, state, self.teacher_variables, self.crops, rows, flips, base_rng
    )

  def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows of the bank, horizontal flips) of `step`: a function of seed and step alone."""
    rng = np.random.default_rng([self.config.seed, step])
    size = self.config.optim.batch_size
    return rng.choice(self.train_rows, size), rng.random(size) < 0.5

  def _evaluate(self, params, rows: np.ndarray):
    """(mean loss terms, top-1 agreement [N], pooled features [N, C], teacher logits [N, K])."""
    size = self.config.optim.batch_size
    totals: dict[str, float] = {}
    outputs = []
    for start in range(0, len(rows), size):
      chunk = rows[start : start + size]
      padded = np.resize(chunk, size)  # fixed shape: one compilation
      terms, *arrays = _eval_step(self.programs, params, self.teacher_variables, self.crops[padded])
      for name, value in terms.items():
        totals[name] = totals.get(name, 0.0) + float(value) * len(chunk)
      outputs.append([np.asarray(a)[: len(chunk)] for a in arrays])
    means = {name: value / len(rows) for name, value in totals.items()}
    return (means, *(np.concatenate(parts) for parts in zip(*outputs)))

  def probe(self, params) -> dict[str, float]:
    """On the held-out images: the feature and class losses, the logit head's top-1 agreement with
    the teacher, and the linear probe's (a ridge from frozen pooled features to the teacher's
    logits, fitted on up to PROBE_TRAIN_CROPS training crops)."""
    if len(self.held_out_rows) == 0:
      return {}
    terms, agree, features, logits = self._evaluate(params, self.held_out_rows)
    train_rows = self.train_rows[:: max(1, len(self.train_rows) // PROBE_TRAIN_CROPS)]
    _, _, train_features, train_logits = self._evaluate(params, train_rows)
    result = {f"held_out/{name}": value for name, value in terms.items()}
    result["held_out/top1_agreement"] = float(agree.mean())
    result["held_out/linear_probe_top1_agreement"] = probes.linear_probe_agreement(
        train_features, train_logits, features, logits
    )
    return result


@dataclasses.dataclass(frozen=True)
class Programs:
  """What the jitted steps take as static: equal runs (tests, resumes in one process) share one
  compilation instead of compiling their own closures."""

  student: DistillStudent
  teacher: Any  # a flax.linen.Module whose output has .stages, .head and .logits
  feature_weight: float
  class_weight: float
  temperature: float
  ema_decay: float


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init_params(student: DistillStudent, size: int, rng: jax.Array):
  return student.init(rng, jnp.zeros((1, size, size, 3)))["params"]


def _losses(programs: Programs, params, teacher_variables, crops, *, train: bool, rngs=None):
  """(total, terms, student output, teacher output) on uint8 crops."""
  teacher = programs.teacher.apply(teacher_variables, vqa.normalize_pixels(crops, jnp.float32))
  student = programs.student.apply({"params": params}, crops, train=train, rngs=rngs)
  total, terms = objective.distillation_loss(
      student.maps,
      student.logits,
      teacher_targets(teacher),
      teacher.logits,
      feature_weight=programs.feature_weight,
      class_weight=programs.class_weight,
      temperature=programs.temperature,
  )
  return total, (terms, student, teacher)


@functools.partial(jax.jit, static_argnums=0, donate_argnums=1)
def _train_step(programs: Programs, state, teacher_variables, crops_all, rows, flips, base_rng):
  """One AdamW step on the crops `rows` of the bank, flipped where `flips`."""
  crops = crops_all[rows]
  crops = jnp.where(flips[:, None, None, None], crops[:, :, ::-1], crops)
  rngs = {steps.DROPOUT_RNG: jax.random.fold_in(base_rng, state.step)}
  (loss, (terms, _, _)), grads = jax.value_and_grad(
      lambda p: _losses(programs, p, teacher_variables, crops, train=True, rngs=rngs),
      has_aux=True,
  )(state.params)
  state, finite = steps.apply_gradients(state, loss, grads, programs.ema_decay)
  return state, {"loss": loss, **terms, "finite": finite.astype(jnp.float32)}


@functools.partial(jax.jit, static_argnums=0)
def _eval_step(programs: Programs, params, teacher_variables, crops):
  """(loss terms, whether the student's top class is the teacher's [B], the student's pooled
  features [B, C], the teacher's logits [B, K])."""
  _, (terms, student, teacher) = _losses(programs, params, teacher_variables, crops, train=False)
  agree = jnp.argmax(student.logits, -1) == jnp.argmax(teacher.logits, -1)
  return terms, agree, student.pooled, teacher.logits


def write_backbone(workdir: Path, params, model_config, name: str = BACKBONE_DIR) -> Path:
  """WORKDIR/`name` in `jaxvqa convert-weights`' layout, replacing an earlier one."""
  from jaxvqa.models import checkpoint_files

  out = workdir / name
  if out.exists():
    shutil.rmtree(out)
  backbone = jax.tree.map(lambda x: np.asarray(x, np.float32), jax.device_get(params["backbone"]))
  # The architecture only: how the attention runs and the training-time drop rate are a run's own.
  kwargs = {
      key: value
      for key, value in model_config.backbone.to_dict().items()
      if key not in ("attention_impl", "drop_path_rate")
  }
  return checkpoint_files.save_converted(out, {"params": backbone}, kwargs)


def _append_log(workdir: Path, record: dict[str, Any]) -> None:
  with open(workdir / LOG_FILE, "a") as out:
    out.write(json.dumps(record) + "\n")


def run_distillation(config, workdir: str | Path, teacher=None) -> dict | None:
  """Trains (or resumes) the student; returns the final probes, or None when stopped to resume.

  `teacher`: (module, variables) in place of config.teacher's (tests pass a small one).
  """
  validate_config(config)
  run_log.configure_logging()
  workdir = Path(workdir).absolute()
  workdir.mkdir(parents=True, exist_ok=True)
  with checkpointing.lock_workdir(workdir):
    return _run(config, workdir, teacher or load_teacher(config.teacher))


def _restore_or_start(run: DistillRun, manager, workdir: Path) -> steps.TrainState:
  """The newest checkpoint's state, or a fresh one whose held-out probe starts the log."""
  import orbax.checkpoint as ocp

  state = run.init_state()
  latest = manager.latest_step()
  if latest is None:
    _append_log(workdir, {"step": 0, **run.probe(state.ema_params)})
    return state
  restored = manager.restore(latest, args=ocp.args.StandardRestore(checkpointing.state_tree(state)))
  log.info("distillation: resumed at step %d of %d", latest, run.config.optim.steps)
  return parallel.replicate(state.replace(**restored), run.mesh)


def _run(config, workdir: Path, teacher) -> dict | None:
  import orbax.checkpoint as ocp

  run = DistillRun(config, load_bank(config, workdir), teacher)
  manager = ocp.CheckpointManager(
      workdir / "distill" / "checkpoints",
      options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True),
  )
  state = _restore_or_start(run, manager, workdir)
  deadline = (
      time.monotonic() + config.train.stop_after_seconds
      if config.train.stop_after_seconds > 0
      else float("inf")
  )
  base_rng = jax.random.PRNGKey(config.seed)
  total = config.optim.steps
  start = int(jax.device_get(state.step))
  tick = time.perf_counter()
  finished = start >= total
  for step in range(start, total):
    rows, flips = run.batch(step)
    sharded = parallel.global_batch({"rows": rows, "flips": flips}, run.mesh)
    state, metrics = run.train_step(state, sharded["rows"], sharded["flips"], base_rng)
    done = step + 1
    stopping = time.monotonic() > deadline
    if done % config.train.log_every_steps == 0 or done == total:
      values = {k: float(v) for k, v in jax.device_get(metrics).items()}
      rate = config.train.log_every_steps * config.optim.batch_size / (time.perf_counter() - tick)
      tick = time.perf_counter()
      log.info(
          "distill step %d/%d  loss %.4f (feature %.4f, class %.4f)  %.0f crops/s",
          done,
          total,
          values["loss"],
          values["feature"],
          values["class"],
          rate,
      )
      _append_log(workdir, {"step": done, **values, "crops_per_s": rate})
    if done % config.train.checkpoint_every_steps == 0 or done == total or stopping:
      manager.save(done, args=ocp.args.StandardSave(checkpointing.state_tree(state)), force=True)
      manager.wait_until_finished()
      report = run.probe(state.ema_params)
      log.info("distill step %d probe: %s", done, format_report(report))
      _append_log(workdir, {"step": done, **report})
    if stopping and done < total:
      log.warning("distillation: stopping at step %d (train.stop_after_seconds); run again", done)
      break
    finished = done == total
  manager.close()
  write_backbone(workdir, state.ema_params, config.model)
  report = {"step": int(jax.device_get(state.step)), **run.probe(state.ema_params)}
  if finished and config.data.decoded_dir and config.train.quality_probe:
    report.update(
        probes.quality_probe(
            run.student.backbone,
            state.ema_params["backbone"],
            (run.teacher_module, run.teacher_variables),
            config,
        )
    )
    _append_log(workdir, report)
  if finished and config.get("iqa") and config.iqa.steps > 0:
    from jaxvqa.distill import iqa_stage

    report.update(
        iqa_stage.run_iqa_stage(
            config,
            workdir,
            photo_list(config.data),
            jax.device_get(state.ema_params["backbone"]),
        )
    )
  (workdir / "distill_results.json").write_text(json.dumps(report, indent=2))
  print(f"distillation: {format_report(report)}; backbone in {workdir / BACKBONE_DIR}")
  return report if finished else None


def format_report(report: dict) -> str:
  return ", ".join(
      f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in report.items()
  )

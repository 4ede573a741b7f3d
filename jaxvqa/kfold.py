"""K-fold leave-families-out training and evaluation on a decoded corpus: every variant, every fold,
one program.

    DecodedSet (jaxvqa.data.decoded; frames live on the accelerator)
      ─▶ folds by family (K ≥ 5; each parent medium is tested exactly once; jaxvqa/folds.py)
      ─▶ models = variants × folds (+ one "ship" model trained without the held-out media),
         stacked on a leading axis and trained by one vmapped, jitted step; each step cuts
         native-pixel fragments (or the paper's resize, per variant) and flips on the device
      ─▶ stage 1, free labels: rank the encodes of one source, codec and resolution by bitrate
         (RankIQA-style; no VMAF used) — variants with pretrain=True start from it
      ─▶ stage 2: the paper's losses and a within-source rank term on VMAF, on batches of
         sources × rungs (weights per variant, traced, so one compilation)
      ─▶ predictions for every encode; per (variant, fold) SRCC, KRCC, PLCC, raw Pearson, RMSE,
         within-source SRCC and the collapse check, beside the bits-per-pixel line fitted on the
         same fold's training encodes ─▶ mean ± standard error over folds

Why one program: tiny models do not fill an accelerator, and K·V separate runs would each pay
compilation and launch overhead; stacked, a step of 40 models costs little more than one.
Variants in one run share the architecture; the hybrid variant's container features are zeroed
for the others, which makes their head exactly the pixel-only head.

Run: `python train.py --config configs/kfold.py --config.data.manual_dir=DATASET` (train.py hands
configs with a `kfold` section here). Checkpoints (Orbax) after each stage and every
`train.checkpoint_every_steps`; a run stopped by `train.stop_after_seconds` or killed resumes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxvqa import (
    calibration,
    checkpointing,
    config as config_lib,
    inference,
    losses,
    metrics,
    optim,
    run_log,
    steps,
    strict_json,
)
from jaxvqa.config import require
from jaxvqa.data import decoded as decoded_lib
from jaxvqa.data import manifest
from jaxvqa.data import video
from jaxvqa.data.device_clips import Layout
from jaxvqa.folds import HostSampler, assign_folds
from jaxvqa.models import vqa
from jaxvqa.scoring import provenance
from jaxvqa.stacked import (
    FINETUNE,
    LOSS_TERMS,
    PAPER_LOSS_TERMS,
    PRETRAIN,
    SCORE_LOSS_TERMS,
    SOURCE_LOSS_TERMS,
    ModelSpec,
    StackedRun,
)

log = logging.getLogger(__name__)

BASELINE = "bits-per-pixel line"


# ---------------------------------------------------------------------------------------- config


def validate_config(config) -> None:
  """Raises config_lib.ConfigError naming the first bad field of a K-fold config."""

  require(config.kfold.folds >= 2, "kfold.folds", f"must be >= 2, got {config.kfold.folds}")
  require(
      config.kfold.ship_variant in config.variants or not config.kfold.ship_variant,
      "kfold.ship_variant",
      f"{config.kfold.ship_variant!r} is not one of the variants " f"{sorted(config.variants)}",
  )
  for name, variant in config.variants.items():
    require(
        variant.sampling in video.MODES,
        f"variants.{name}.sampling",
        f"must be one of {video.MODES}, got {variant.sampling!r}",
    )
    unknown = sorted(set(variant.loss) - set(LOSS_TERMS))
    require(not unknown, f"variants.{name}.loss", f"unknown terms {unknown}; known: {LOSS_TERMS}")
    require(
        any(variant.loss.get(term, 0) > 0 for term in SCORE_LOSS_TERMS),
        f"variants.{name}.loss",
        f"needs a positive score loss ({', '.join(SCORE_LOSS_TERMS)})",
    )
    losses.LossWeights(**{term: float(variant.loss.get(term, 0.0)) for term in PAPER_LOSS_TERMS})
    require(
        not variant.get("detail", False) or config.model.get("detail_features", 0) > 0,
        f"variants.{name}.detail",
        "needs config.model.detail_features > 0 (the number of detail filters)",
    )
    require(
        not variant.get("statistics", False) or config.model.get("statistics_region", 0) > 0,
        f"variants.{name}.statistics",
        "needs config.model.statistics_region > 0 (the fragment size)",
    )
    require(
        variant.get("embedding", True)
        or variant.get("detail", False)
        or variant.get("statistics", False),
        f"variants.{name}.embedding",
        "False needs detail=True or statistics=True: the head must read the embedding or "
        "statistics",
    )
    require(variant.margin >= 0, f"variants.{name}.margin", f"must be >= 0, got {variant.margin}")
    for term in SOURCE_LOSS_TERMS:  # LossWeights checks the paper's
      require(
          variant.loss.get(term, 0.0) >= 0,
          f"variants.{name}.loss.{term}",
          f"must be >= 0, got {variant.loss.get(term)}",
      )
  if config.kfold.ship_variant:
    require(
        not config.variants[config.kfold.ship_variant].container,
        "kfold.ship_variant",
        "must be a pixel-only variant (container=False): the shipped scorer reads pixels only",
    )
  require(
      config.data.frame_size % config.data.fragment_grid == 0,
      "data.frame_size",
      f"({config.data.frame_size}) must be a multiple of data.fragment_grid "
      f"({config.data.fragment_grid})",
  )
  # Evaluation and the shipped scorer read fragments, whatever a variant trains on.
  config_lib.validate_fragments(config.model, config.data, "fragments")
  require(
      1 <= config.data.num_frames <= config.data.decoded_frames,
      "data.num_frames",
      f"must be in [1, data.decoded_frames={config.data.decoded_frames}]",
  )
  for field in (
      "optim.steps",
      "optim.learning_rate",
      "train.log_every_steps",
      "train.checkpoint_every_steps",
      "train.eval_batch_size",
  ):
    section, key = field.split(".")
    require(config[section][key] > 0, field, f"must be > 0, got {config[section][key]!r}")


# ---------------------------------------------------------------------------------------- models


def model_specs(config) -> list[ModelSpec]:
  specs = []
  for name, variant in config.variants.items():
    weights = tuple(float(variant.loss.get(term, 0.0)) for term in LOSS_TERMS)
    folds = list(range(config.kfold.folds))
    if name == config.kfold.ship_variant:
      folds.append(config.kfold.folds)
    specs += [
        ModelSpec(
            name,
            fold,
            variant.sampling,
            bool(variant.pretrain),
            bool(variant.container),
            weights,
            float(variant.margin),
            bool(variant.get("detail", False)),
            bool(variant.get("embedding", True)),
            bool(variant.get("statistics", False)),
        )
        for fold in folds
    ]
  return specs


# ---------------------------------------------------------------------------------- the protocol


def _schedule_config(optim_config, steps_count: int, learning_rate: float) -> dict:
  return dict(
      learning_rate=learning_rate,
      backbone_lr_multiplier=optim_config.backbone_lr_multiplier,
      weight_decay=optim_config.weight_decay,
      warmup_epochs=min(optim_config.warmup_steps, steps_count // 2),
      epochs=steps_count,
      grad_clip_norm=optim_config.grad_clip_norm,
  )


def fold_report(
    score: np.ndarray, data: decoded_lib.DecodedSet, train: np.ndarray, test: np.ndarray
) -> dict:
  """Held-out metrics of one model on its `test` encodes.

  SRCC/KRCC on raw scores, PLCC/RMSE after the bounded logistic (jaxvqa.metrics), within-source
  SRCC, and the collapse check on scores calibrated by the fit on the model's own `train`
  predictions: a PLCC-trained score has no scale of its own, so its raw spread says nothing.
  """
  report = metrics.evaluate(score[test], data.label[test]).to_dict()
  calibrated = calibration.fit_calibration(score[train], data.label[train])(score[test])
  collapse = metrics.collapse_check(
      calibrated, data.label[test], data.source[test], data.rung[test]
  )
  return {
      **{key: value for key, value in report.items() if isinstance(value, (int, float))},
      "within_source_srcc": metrics.within_source_srcc(
          score[test], data.label[test], data.source[test]
      ),
      **{
          f"collapse/{key}": value
          for key, value in collapse.items()
          if isinstance(value, (int, float, bool))
      },
  }


def bits_per_pixel_line(data: decoded_lib.DecodedSet, train: np.ndarray) -> np.ndarray:
  """label ≈ a·log(bpp) + b fitted on `train`, for every encode (jaxvqa.baselines' line)."""
  log_bpp = np.log(data.bits_per_pixel)
  slope, intercept = np.polyfit(log_bpp[train], data.label[train], 1)
  return slope * log_bpp + intercept


class KFoldRun:
  """The whole protocol for one config and workdir (see the module docstring)."""

  def __init__(self, config, workdir: str | Path):
    self.config, self.workdir = config, Path(workdir)
    if not (config.data.manual_dir or config.data.decoded_dir):
      raise config_lib.ConfigError(
          "config.data.manual_dir is empty: point it at a `jaxvqa make-dataset --out` directory "
          "(or config.data.decoded_dir at a decoded set)"
      )
    decoded_dir = Path(config.data.decoded_dir or Path(config.data.manual_dir) / "decoded")
    if config.data.manual_dir:
      listed = Path(config.data.manual_dir) / manifest.MANIFEST_NAME
      if not listed.is_file():
        raise config_lib.ConfigError(
            f"config.data.manual_dir={config.data.manual_dir!r} holds no {manifest.MANIFEST_NAME}:"
            " point it at a `jaxvqa make-dataset --out` directory"
        )
      decoded_lib.build(
          config.data.manual_dir,
          decoded_dir,
          frames_per_video=config.data.decoded_frames,
          jobs=config.data.jobs or None,
      )
    elif not decoded_dir.is_dir():
      raise config_lib.ConfigError(
          f"config.data.decoded_dir={config.data.decoded_dir!r} is not a directory: point it at a"
          " decoded set (or config.data.manual_dir at a `jaxvqa make-dataset --out` directory)"
      )
    self.data = decoded_lib.load(decoded_dir)
    fold_of_family = assign_folds(self.data.family, config.kfold.folds, config.kfold.seed)
    self.fold = fold_of_family[self.data.family]
    held_out = np.isin(
        np.asarray(self.data.family_names)[self.data.family], list(config.kfold.hold_out_media)
    )
    self.test_sets = [np.flatnonzero(self.fold == k) for k in range(config.kfold.folds)]
    self.test_sets.append(np.flatnonzero(held_out))
    self.train_sets = [np.flatnonzero(self.fold != k) for k in range(config.kfold.folds)]
    self.train_sets.append(np.flatnonzero(~held_out))
    height, width = self.data.frames.shape[2:4]
    self.layout = Layout(
        num_frames=config.data.num_frames,
        size=config.data.frame_size,
        grid=config.data.fragment_grid,
        height=height,
        width=width,
        align=config.data.get("fragment_align", 1),
    )
    self.specs = model_specs(config)
    self.sampler = HostSampler(
        self.data,
        self.train_sets,
        self.layout,
        groups=config.data.groups_per_batch,
        per_group=config.data.videos_per_group,
        seed=config.seed,
    )
    self.run = StackedRun(config, self.data, self.specs, self.layout)
    self.deadline = (
        time.monotonic() + config.train.stop_after_seconds
        if config.train.stop_after_seconds > 0
        else float("inf")
    )

  def _checkpoints(self, stage: str):
    import orbax.checkpoint as ocp

    return ocp.CheckpointManager(
        self.workdir.absolute() / "kfold" / stage,
        options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True),
    )

  def _train_stage(self, stage: str, states, num_steps: int):
    """Trains `states` to `num_steps` of `stage`, resuming from its checkpoint; returns (states,
    finished)."""
    import orbax.checkpoint as ocp

    manager = self._checkpoints(stage)
    latest = manager.latest_step()
    if latest is not None:
      restored = manager.restore(
          latest, args=ocp.args.StandardRestore(checkpointing.state_tree(states))
      )
      states = states.replace(**restored)
      log.info("%s: resumed at step %d of %d", stage, latest, num_steps)
    # Orbax restores committed arrays, a fresh init's are not: the step's program would differ by
    # its input shardings, and a resumed run would compile it again instead of finding it in the
    # persistent compilation cache. Committing both to the one device makes them the same program.
    states = jax.device_put(states, jax.devices()[0])
    start = int(jax.device_get(states.step[0]))
    step_fn = self.run.train_step(stage)
    base_rng = jax.random.PRNGKey(self.config.seed + (stage == FINETUNE))
    every = self.config.train.checkpoint_every_steps
    tick = time.perf_counter()
    for step in range(start, num_steps):
      states, step_metrics = step_fn(
          states, self.sampler.draw(stage, step), base_rng, self.run.arrays
      )
      done = step + 1
      if done % self.config.train.log_every_steps == 0 or done == num_steps:
        values = jax.device_get(step_metrics)
        rate = self.config.train.log_every_steps / (time.perf_counter() - tick)
        tick = time.perf_counter()
        log.info(
            "%s step %d/%d  loss %s  (%.1f steps/s, %d models × %d videos)",
            stage,
            done,
            num_steps,
            np.array2string(np.asarray(values["loss"])[:8], precision=3),
            rate,
            len(self.specs),
            self.sampler.batch_size,
        )
      if done % every == 0 or done == num_steps or time.monotonic() > self.deadline:
        manager.save(done, args=ocp.args.StandardSave(checkpointing.state_tree(states)), force=True)
        manager.wait_until_finished()
        if time.monotonic() > self.deadline and done < num_steps:
          log.warning(
              "%s: stopping at step %d (train.stop_after_seconds); run again to resume", stage, done
          )
          manager.close()
          return states, False
    manager.close()
    return states, True

  def train(self):
    """(finetuned states, finished)."""
    config = self.config
    pretrain_tx = optim.build_optimizer(
        _schedule_config(config.optim, config.pretrain.steps, config.pretrain.learning_rate),
        1,
        freeze_backbone=False,
    )
    finetune_tx = optim.build_optimizer(
        _schedule_config(config.optim, config.optim.steps, config.optim.learning_rate),
        1,
        freeze_backbone=False,
    )
    finetune_states = self.run.init_states(finetune_tx, config.seed)
    if (
        self._checkpoints(FINETUNE).latest_step() is None
        and config.pretrain.steps > 0
        and any(spec.pretrain for spec in self.specs)
    ):
      pretrained, finished = self._train_stage(
          PRETRAIN, self.run.init_states(pretrain_tx, config.seed), config.pretrain.steps
      )
      if not finished:
        return finetune_states, False
      use = jnp.asarray([spec.pretrain for spec in self.specs])
      params = jax.tree.map(
          lambda p, f: jnp.where(use.reshape((-1,) + (1,) * (p.ndim - 1)), p, f),
          pretrained.params,
          finetune_states.params,
      )
      finetune_states = jax.jit(jax.vmap(lambda p: steps.TrainState.create(p, finetune_tx)))(params)
    return self._train_stage(FINETUNE, finetune_states, config.optim.steps)

  def evaluate(self, scores: np.ndarray) -> dict[str, Any]:
    return evaluate_folds(
        scores, self.data, self.specs, self.train_sets, self.test_sets, self.config.kfold.folds
    )


def evaluate_folds(
    scores: np.ndarray,
    data: decoded_lib.DecodedSet,
    specs: list[ModelSpec],
    train_sets: list[np.ndarray],
    test_sets: list[np.ndarray],
    num_folds: int,
) -> dict[str, Any]:
  """Per-variant fold reports from `scores` [M, N], their mean ± SE, the bits-per-pixel line on
  the same folds, each variant's out-of-fold predictions pooled over all encodes, and the ship
  model's report on the held-out media."""
  per_variant: dict[str, list[dict]] = {}
  ship = {}
  for index, spec in enumerate(specs):
    report = fold_report(scores[index], data, train_sets[spec.fold], test_sets[spec.fold])
    if spec.fold == num_folds:
      ship[spec.variant] = report
    else:
      per_variant.setdefault(spec.variant, []).append(report)
  out_of_fold = {}
  for name in per_variant:
    pooled = np.full(len(data), np.nan)
    for index, spec in enumerate(specs):
      if spec.variant == name and spec.fold < num_folds:
        pooled[test_sets[spec.fold]] = scores[index][test_sets[spec.fold]]
    out_of_fold[name] = metrics.evaluate(pooled, data.label).to_dict()
  per_variant[BASELINE] = [
      fold_report(
          bits_per_pixel_line(data, train_sets[fold]), data, train_sets[fold], test_sets[fold]
      )
      for fold in range(num_folds)
  ]
  summary = {name: metrics.summarize_folds(reports) for name, reports in per_variant.items()}
  return {
      "per_fold": per_variant,
      "summary": summary,
      "ship_held_out": ship,
      "out_of_fold": out_of_fold,
      "num_encodes": len(data),
      "num_families": len(data.family_names),
      "num_sources": len(data.source_names),
  }


def _matching_subtree(tree, shapes):
  """The part of nested dict `tree` with exactly the keys of nested dict `shapes`."""
  if isinstance(shapes, Mapping):
    return {key: _matching_subtree(tree[key], value) for key, value in shapes.items()}
  return tree


def ship_model(run: KFoldRun, states, scores: np.ndarray, out_dir: Path) -> Path | None:
  """Writes the ship variant's extra model (trained without the held-out media) as a standalone
  scorer that `inference.load_shipped_model` reads: params.msgpack (EMA weights, pixel-only
  tree) and model.json (id, config, calibration on its training encodes, provenance)."""
  from flax import serialization

  config = run.config
  index = next(
      (
          i
          for i, spec in enumerate(run.specs)
          if spec.variant == config.kfold.ship_variant and spec.fold == config.kfold.folds
      ),
      None,
  )
  if index is None:
    return None
  spec = run.specs[index]
  if spec.container:
    raise ValueError("config.kfold.ship_variant must be a pixel-only variant (container=False)")
  model_config = config.model.to_dict()
  model_config.update(
      container_features=False,
      detail_features=model_config.get("detail_features", 0) if spec.detail else 0,
      statistics_region=model_config.get("statistics_region", 0) if spec.statistics else 0,
      embedding_in_head=spec.embedding,
      dtype="float32",
  )
  # The stack's tree holds every variant's branches; the shipped scorer has only its own (no
  # container Dense; no detail branch, or no backbone, when its variant does not use it).
  shipped_shapes = steps.param_shapes(
      vqa.build_vqa_model(ml_collections.ConfigDict(model_config)),
      video.FrameOptions(num_frames=config.data.num_frames, size=config.data.frame_size),
  )
  stacked = jax.device_get(jax.tree.map(lambda leaf: leaf[index], states.ema_params))
  # The shipped scorer computes in float32 wherever it runs (CPU inference has no fast bf16).
  params = jax.tree.map(
      lambda leaf: np.asarray(leaf, np.float32), _matching_subtree(stacked, shipped_shapes)
  )
  train = run.train_sets[spec.fold]
  fitted = calibration.fit_calibration(scores[index][train], run.data.label[train])
  out_dir.mkdir(parents=True, exist_ok=True)
  (out_dir / inference.SHIPPED_PARAMS).write_bytes(serialization.msgpack_serialize(params))
  data = run.data
  card = {
      "id": config.kfold.ship_id,
      "config": {
          "model": model_config,
          "data": {
              "sampling": spec.sampling,
              "num_frames": config.data.num_frames,
              "frame_size": config.data.frame_size,
              "fragment_grid": config.data.fragment_grid,
              "fragment_align": config.data.get("fragment_align", 1),
          },
      },
      "calibration": fitted.to_dict(),
      checkpointing.DIGEST_KEY: checkpointing.weights_digest(params),
      "training": {
          "variant": spec.variant,
          "pretrain_steps": config.pretrain.steps if spec.pretrain else 0,
          "finetune_steps": config.optim.steps,
          "families": len(np.unique(data.family[train])),
          "sources": len(np.unique(data.source[train])),
          "encodes": len(train),
          "codecs": sorted(set(data.codec_names)),
          "held_out_media": list(config.kfold.hold_out_media),
          # The ffmpeg/libvmaf that make-dataset ran here (a run does not record its own).
          "label": f"{provenance.vmaf_label_source()}, mean over frames",
      },
  }
  (out_dir / inference.SHIPPED_CARD).write_text(strict_json.dumps(card, indent=2))
  return out_dir


def run_kfold(config, workdir: str | Path) -> dict | None:
  """Trains (or resumes) and evaluates every variant on every fold; writes results.json and
  results.md in `workdir`. Returns the results, or None when stopped early to resume later."""
  validate_config(config)
  run_log.configure_logging()
  workdir = Path(workdir)
  with checkpointing.lock_workdir(workdir):
    return _run_kfold(config, workdir)


def _run_kfold(config, workdir: Path) -> dict | None:
  started = time.perf_counter()
  run = KFoldRun(config, workdir)
  log.info(
      "%d encodes of %d sources in %d families; %d folds; %d stacked models",
      len(run.data),
      len(run.data.source_names),
      len(run.data.family_names),
      config.kfold.folds,
      len(run.specs),
  )
  states, finished = run.train()
  if not finished and not config.train.evaluate_when_stopped:
    return None
  scores = run.run.predict(states.ema_params, config.train.eval_batch_size)
  np.save(workdir / "scores.npy", scores)
  results = run.evaluate(scores)
  results["finetune_steps_done"] = int(jax.device_get(states.step[0]))
  table = metrics.format_fold_table(results["summary"])
  (workdir / "results.json").write_text(strict_json.dumps(results, indent=2))
  (workdir / "results.md").write_text(table + "\n")
  ship_model(run, states, scores, workdir / "shipped")
  print(table)
  print(
      f"K-fold protocol done in {time.perf_counter() - started:.0f} s; results in "
      f"{workdir.absolute()}"
  )
  return results

"""K-fold leave-families-out training and evaluation on a decoded corpus: every variant, every fold,
one program.

    DecodedSet (jaxvqa.data.decoded; frames live on the accelerator)
      ─▶ folds by family (K ≥ 5; each parent medium is tested exactly once; jaxvqa/kfold/folds.py)
      ─▶ models = variants × folds (+ one "ship" model trained without the held-out media),
         stacked on a leading axis and trained by one vmapped, jitted step; each step cuts
         native-pixel fragments (or the paper's resize, per variant) and flips on the device
      ─▶ stage 1, free labels: rank the encodes of one source, codec and resolution by bitrate
         (RankIQA-style; no VMAF used) — variants with pretrain=True start from it
      ─▶ stage 2: the paper's losses and a within-source rank term on VMAF, on batches of
         sources × rungs (weights per variant, traced, so one compilation)
      ─▶ predictions for every encode; per (variant, fold) SRCC, KRCC, PLCC, raw Pearson, RMSE,
         within-source SRCC and the collapse check, beside the bits-per-pixel line fitted on the
         same fold's training encodes ─▶ mean ± standard error over folds, over all test encodes
         and over those of `kfold.subsets`' families alone (real photographs and video by default)

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
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvqa import config as config_lib, strict_json
from jaxvqa.kfold import report as kfold_report, ship as kfold_ship
from jaxvqa.train import checkpointing, losses, optim, run_log, steps
from jaxvqa.config import require
from jaxvqa.data import decoded as decoded_lib
from jaxvqa.data import manifest
from jaxvqa.data import video
from jaxvqa.data.device_clips import Layout
from jaxvqa.kfold.folds import HostSampler, assign_folds
from jaxvqa.models import checkpoint_files
from jaxvqa.kfold.stacked import (
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


# ---------------------------------------------------------------------------------------- config


def validate_config(config) -> None:
  """Raises config_lib.ConfigError naming the first bad field of a K-fold config."""

  require(config.kfold.folds >= 2, "kfold.folds", f"must be >= 2, got {config.kfold.folds}")
  require(
      config.kfold.ship_variant in config.variants or not config.kfold.ship_variant,
      "kfold.ship_variant",
      f"{config.kfold.ship_variant!r} is not one of the variants " f"{sorted(config.variants)}",
  )
  require(
      config.kfold.get("ship_weights", "float32") in ("float32", "bfloat16"),
      "kfold.ship_weights",
      f"must be 'float32' or 'bfloat16', got {config.kfold.get('ship_weights')!r}",
  )
  require(
      config.kfold.ship_variant or not config.kfold.get("ship_only", False),
      "kfold.ship_only",
      "trains the ship variant's model alone, but kfold.ship_variant is empty",
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
    start = variant.get("start", "")
    require(
        not start or bool(config.get("init", {}).get(start)),
        f"variants.{name}.start",
        f"names config.init.{start}, which is not set: give it the directory of a backbone "
        "(`python train.py --config configs/distill.py` writes WORKDIR/backbone)",
    )
    require(
        not start or variant.get("embedding", True),
        f"variants.{name}.start",
        "a backbone start needs embedding=True: the head of this variant never reads the backbone",
    )
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
  ship_only = config.kfold.get("ship_only", False)
  for name, variant in config.variants.items():
    weights = tuple(float(variant.loss.get(term, 0.0)) for term in LOSS_TERMS)
    folds = [] if ship_only else list(range(config.kfold.folds))
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
            str(variant.get("start", "")),
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
      # Onto the one device the step runs on (below); `states` may be shapes only (`train`).
      target = checkpointing.on_first_device(checkpointing.state_tree(states))
      restored = manager.restore(latest, args=ocp.args.StandardRestore(target))
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

  def _initial_states(self, tx, shapes_only: bool = False):
    """Freshly initialised stacked states, with each model whose variant names a `start` holding
    that backbone (the same weights in every fold's copy). With `shapes_only`, for a resume, their
    shapes alone; a start is still checked against them."""
    states = self.run.init_states(tx, self.config.seed, shapes_only)
    starts = sorted({spec.start for spec in self.specs if spec.start})
    if not starts:
      return states
    params = dict(jax.device_get(states.params))
    for start in starts:
      directory = self.config.init[start]
      try:
        variables, _ = checkpoint_files.load_backbone(directory)
      except FileNotFoundError as error:
        raise config_lib.ConfigError(f"config.init.{start}: {error}") from None
      loaded = variables["params"]
      want = jax.tree.map(lambda x: x.shape[1:], params["backbone"])
      have = jax.tree.map(np.shape, loaded)
      if want != have:
        raise config_lib.ConfigError(
            f"config.init.{start}: the backbone in {directory} does not fit config.model.backbone "
            f"(its stage-0 patch embedding is {have.get('patch_embed')} where the model needs "
            f"{want.get('patch_embed')}); distil with the same config.model"
        )
      if shapes_only:
        continue
      use = np.asarray([spec.start == start for spec in self.specs])
      params["backbone"] = jax.tree.map(
          lambda stacked, one: np.where(
              use.reshape((-1,) + (1,) * one.ndim), one[None].astype(stacked.dtype), stacked
          ),
          params["backbone"],
          loaded,
      )
      log.info("%d models start their backbone from %s", int(use.sum()), directory)
    if shapes_only:
      return states
    return jax.jit(jax.vmap(lambda p: steps.TrainState.create(p, tx)))(params)

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
    # A resumed fine-tuning restores every value of its states: their shapes are enough.
    resuming = self._checkpoints(FINETUNE).latest_step() is not None
    finetune_states = self._initial_states(finetune_tx, shapes_only=resuming)
    if not resuming and config.pretrain.steps > 0 and any(spec.pretrain for spec in self.specs):
      pretrained, finished = self._train_stage(
          PRETRAIN, self._initial_states(pretrain_tx), config.pretrain.steps
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
    return kfold_report.evaluate_folds(
        scores,
        self.data,
        self.specs,
        self.train_sets,
        self.test_sets,
        self.config.kfold.folds,
        subsets=dict(self.config.kfold.get("subsets", {})),
    )


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
  table = kfold_report.format_tables(results)
  (workdir / "results.json").write_text(strict_json.dumps(results, indent=2))
  (workdir / "results.md").write_text(table + "\n")
  kfold_ship.ship_model(run, states, scores, workdir / "shipped")
  print(table)
  print(
      f"K-fold protocol done in {time.perf_counter() - started:.0f} s; results in "
      f"{workdir.absolute()}"
  )
  return results

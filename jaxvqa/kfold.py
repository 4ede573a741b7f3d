"""K-fold leave-families-out training and evaluation on a decoded corpus: every variant, every fold,
one program.

    DecodedSet (jaxvqa.data.decoded; frames live on the accelerator)
      ─▶ folds by family (K ≥ 5; each parent medium is tested exactly once)
      ─▶ models = variants × folds (+ one "ship" model trained without the held-out media),
         stacked on a leading axis and trained by one vmapped, jitted step; each step cuts
         native-pixel fragments (or the paper's resize, per variant) and flips on the device
      ─▶ stage 1, free labels: rank the encodes of one source, codec and resolution by bitrate
         (RankIQA-style; no VMAF used) — variants with pretrain=True start from it
      ─▶ stage 2: the paper's losses on VMAF (weights per variant, traced, so one compilation)
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

import json
import logging
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvqa import (calibration, checkpointing, config as config_lib, inference, losses, metrics,
                    optim, run_log, steps)
from jaxvqa.data import decoded as decoded_lib
from jaxvqa.data import video
from jaxvqa.data.device_clips import Layout
from jaxvqa.stacked import (FINETUNE, LOSS_TERMS, PAPER_LOSS_TERMS, PRETRAIN, ModelSpec,
                            StackedRun)

log = logging.getLogger(__name__)

BASELINE = "bits-per-pixel line"


# ---------------------------------------------------------------------------------------- config

def validate_config(config) -> None:
  """Raises config_lib.ConfigError naming the first bad field of a K-fold config."""
  def require(condition: bool, field: str, message: str) -> None:
    if not condition:
      raise config_lib.ConfigError(f"config.{field}: {message}")

  require(config.kfold.folds >= 2, "kfold.folds", f"must be >= 2, got {config.kfold.folds}")
  require(config.kfold.ship_variant in config.variants or not config.kfold.ship_variant,
          "kfold.ship_variant", f"{config.kfold.ship_variant!r} is not one of the variants "
          f"{sorted(config.variants)}")
  for name, variant in config.variants.items():
    require(variant.sampling in video.MODES, f"variants.{name}.sampling",
            f"must be one of {video.MODES}, got {variant.sampling!r}")
    unknown = sorted(set(variant.loss) - set(LOSS_TERMS))
    require(not unknown, f"variants.{name}.loss", f"unknown terms {unknown}; known: {LOSS_TERMS}")
    require(any(variant.loss.get(term, 0) > 0
                for term in ("plcc", "l1", "rank", "all_pairs_rank", "source_rank")),
            f"variants.{name}.loss",
            "needs a positive score loss (plcc, l1, rank, all_pairs_rank, source_rank)")
    losses.LossWeights(**{term: float(variant.loss.get(term, 0.0)) for term in PAPER_LOSS_TERMS})
    require(variant.loss.get("source_rank", 0.0) >= 0, f"variants.{name}.loss.source_rank",
            f"must be >= 0, got {variant.loss.get('source_rank')}")
  if config.kfold.ship_variant:
    require(not config.variants[config.kfold.ship_variant].container, "kfold.ship_variant",
            "must be a pixel-only variant (container=False): the shipped scorer reads pixels only")
  require(config.data.frame_size % config.data.fragment_grid == 0, "data.frame_size",
          f"({config.data.frame_size}) must be a multiple of data.fragment_grid "
          f"({config.data.fragment_grid})")
  require(1 <= config.data.num_frames <= config.data.decoded_frames, "data.num_frames",
          f"must be in [1, data.decoded_frames={config.data.decoded_frames}]")
  for field in ("optim.steps", "optim.learning_rate", "train.log_every_steps",
                "train.checkpoint_every_steps", "train.eval_batch_size"):
    section, key = field.split(".")
    require(config[section][key] > 0, field, f"must be > 0, got {config[section][key]!r}")


# ----------------------------------------------------------------------------------------- folds

def assign_folds(family: np.ndarray, num_folds: int, seed: int) -> np.ndarray:
  """int [N] family ids → int [num_families] fold of each family.

  Families are shuffled (seeded), then dealt largest first to the fold with fewest encodes, so
  folds hold similar numbers of encodes and every family is in exactly one fold.
  """
  counts = np.bincount(family)
  num_families = len(counts)
  if num_families < num_folds:
    raise ValueError(f"{num_families} families cannot fill {num_folds} folds: lower "
                     "config.kfold.folds or make a larger corpus")
  order = np.random.default_rng(seed).permutation(num_families)
  order = order[np.argsort(-counts[order], kind="stable")]
  fold_of, load = np.zeros(num_families, np.int64), np.zeros(num_folds, np.int64)
  for family_id in order:
    target = int(np.argmin(load))
    fold_of[family_id] = target
    load[target] += counts[family_id]
  return fold_of


def model_specs(config) -> list[ModelSpec]:
  specs = []
  for name, variant in config.variants.items():
    weights = tuple(float(variant.loss.get(term, 0.0)) for term in LOSS_TERMS)
    folds = list(range(config.kfold.folds))
    if name == config.kfold.ship_variant:
      folds.append(config.kfold.folds)
    specs += [ModelSpec(name, fold, variant.sampling, bool(variant.pretrain),
                        bool(variant.container), weights) for fold in folds]
  return specs


# ------------------------------------------------------------------------------------- sampling

class HostSampler:
  """Draws, per fold, the encodes, frames, fragment origins and flips of one step (numpy).

  Randomness is a function of (seed, stage, step), so a resumed run draws what an uninterrupted
  one would have.
  """

  def __init__(self, data: decoded_lib.DecodedSet, train_sets: list[np.ndarray], layout: Layout,
               *, groups: int, per_group: int, seed: int):
    self.data, self.layout, self.seed = data, layout, seed
    self.groups, self.per_group = groups, per_group
    # VMAF batches are sources × rungs (PAPER.md: "e.g. 2 sources × 4 rungs"): every source of a
    # batch appears at every rung of it, so the batch holds the within-source contrasts that
    # compression makes, not only content differences between rungs.
    self.ladders = [self._ladders(indices) for indices in train_sets]
    # Free-label tuples: encodes of one source, codec and resolution, ordered by bitrate.
    self.tuples = []
    for indices in train_sets:
      keys = np.stack([data.source[indices], data.codec[indices],
                       np.round(data.scale[indices] * 1000).astype(np.int64)], axis=1)
      _, tuple_id = np.unique(keys, axis=0, return_inverse=True)
      self.tuples.append([indices[tuple_id.reshape(-1) == t] for t in range(tuple_id.max() + 1)])
    self.tuple_size = min(len(members) for per_fold in self.tuples for members in per_fold)
    num_rungs = int(data.rung.max()) + 1
    if num_rungs < groups:
      raise ValueError(f"the set has {num_rungs} bitrate groups (rungs); "
                       f"config.data.groups_per_batch={groups} needs that many")
    for fold, ladders in enumerate(self.ladders):
      if len(ladders[0]) < per_group:
        raise ValueError(f"fold {fold}: {len(ladders[0])} training sources have every rung; "
                         f"config.data.videos_per_group={per_group} needs that many")

  def _ladders(self, indices: np.ndarray) -> tuple[np.ndarray, list[list[list[int]]]]:
    """(sources with every rung of the set, encodes[source][rung] — one per codec)."""
    data = self.data
    num_rungs = int(data.rung.max()) + 1
    encodes: dict[int, list[list[int]]] = {}
    for index in indices:
      encodes.setdefault(int(data.source[index]), [[] for _ in range(num_rungs)])[
          int(data.rung[index])].append(int(index))
    complete = sorted(source for source, rungs in encodes.items() if all(rungs))
    return np.asarray(complete, np.int64), [encodes[source] for source in complete]

  @property
  def batch_size(self) -> int:
    return self.groups * self.per_group

  def _rng(self, stage: str, step: int) -> np.random.Generator:
    return np.random.default_rng([self.seed, (PRETRAIN, FINETUNE).index(stage), step])

  def _free_label_batch(self, fold: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Whole tuples (one source, codec, resolution at several bitrates), a group each; a batch
    that tuples do not fill is padded with singleton groups, which form no rank pairs."""
    per_tuple = min(self.tuple_size, self.batch_size)
    count = self.batch_size // per_tuple
    chosen = rng.choice(len(self.tuples[fold]), count, replace=False)
    videos = np.concatenate([rng.choice(self.tuples[fold][t], per_tuple, replace=False)
                             for t in chosen])
    groups = np.repeat(np.arange(count), per_tuple)
    pad = self.batch_size - len(videos)
    return (np.concatenate([videos, videos[:pad]]),
            np.concatenate([groups, count + np.arange(pad)]))

  def _group_batch(self, fold: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """`groups` rungs × the same `per_group` sources (a random codec per cell), group-major."""
    sources, encodes = self.ladders[fold]
    rungs = rng.choice(len(encodes[0]), self.groups, replace=False)
    chosen = rng.choice(len(sources), self.per_group, replace=False)
    videos = [encodes[s][r][rng.integers(len(encodes[s][r]))] for r in rungs for s in chosen]
    return np.asarray(videos), np.repeat(rungs, self.per_group)

  def draw(self, stage: str, step: int) -> dict[str, np.ndarray]:
    """Index arrays for every fold: video [K, B], group [K, B], frame picks [K, B, T],
    fragment origins rows/cols [K, B, g], flip [K, B]; `rank_label` [K, B] for the free labels."""
    rng = self._rng(stage, step)
    batch_of = self._free_label_batch if stage == PRETRAIN else self._group_batch
    videos, groups = zip(*(batch_of(fold, rng) for fold in range(len(self.ladders))))
    rank_label = [np.log(self.data.bits_per_pixel[fold_videos]) for fold_videos in videos]
    num_folds, batch = len(videos), self.batch_size
    layout = self.layout
    stored = self.data.frames.shape[1]
    starts = (np.arange(layout.num_frames) * stored) // layout.num_frames
    stops = np.maximum(((np.arange(layout.num_frames) + 1) * stored) // layout.num_frames, starts + 1)
    picks = rng.integers(starts, stops, size=(num_folds, batch, layout.num_frames))
    patch = layout.size // layout.grid
    rows = video.fragment_origins(layout.height, layout.grid, patch, rng, (num_folds, batch))
    cols = video.fragment_origins(layout.width, layout.grid, patch, rng, (num_folds, batch))
    return {"video": np.stack(videos).astype(np.int32), "group": np.stack(groups).astype(np.int32),
            "picks": picks.astype(np.int32), "rows": rows.astype(np.int32),
            "cols": cols.astype(np.int32), "flip": rng.random((num_folds, batch)) < 0.5,
            "rank_label": np.stack(rank_label).astype(np.float32)}


# ---------------------------------------------------------------------------------- the protocol

def _schedule_config(optim_config, steps_count: int, learning_rate: float) -> dict:
  return dict(learning_rate=learning_rate, backbone_lr_multiplier=optim_config.backbone_lr_multiplier,
              weight_decay=optim_config.weight_decay,
              warmup_epochs=min(optim_config.warmup_steps, steps_count // 2), epochs=steps_count,
              grad_clip_norm=optim_config.grad_clip_norm)


def fold_report(score: np.ndarray, data: decoded_lib.DecodedSet, train: np.ndarray,
                test: np.ndarray) -> dict:
  """Held-out metrics of one model on its `test` encodes.

  SRCC/KRCC on raw scores, PLCC/RMSE after the bounded logistic (jaxvqa.metrics), within-source
  SRCC, and the collapse check on scores calibrated by the fit on the model's own `train`
  predictions: a PLCC-trained score has no scale of its own, so its raw spread says nothing.
  """
  report = metrics.evaluate(score[test], data.label[test]).to_dict()
  calibrated = calibration.fit_calibration(score[train], data.label[train])(score[test])
  collapse = metrics.collapse_check(calibrated, data.label[test], data.source[test],
                                    data.rung[test])
  return {**{key: value for key, value in report.items() if isinstance(value, (int, float))},
          "within_source_srcc": metrics.within_source_srcc(score[test], data.label[test],
                                                           data.source[test]),
          **{f"collapse/{key}": value for key, value in collapse.items()
             if isinstance(value, (int, float, bool))}}


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
          "(or config.data.decoded_dir at a decoded set)")
    decoded_dir = Path(config.data.decoded_dir or Path(config.data.manual_dir) / "decoded")
    if config.data.manual_dir:
      decoded_lib.build(config.data.manual_dir, decoded_dir,
                        frames_per_video=config.data.decoded_frames, jobs=config.data.jobs or None)
    self.data = decoded_lib.load(decoded_dir)
    fold_of_family = assign_folds(self.data.family, config.kfold.folds, config.kfold.seed)
    self.fold = fold_of_family[self.data.family]
    held_out = np.isin(np.asarray(self.data.family_names)[self.data.family],
                       list(config.kfold.hold_out_media))
    self.test_sets = [np.flatnonzero(self.fold == k) for k in range(config.kfold.folds)]
    self.test_sets.append(np.flatnonzero(held_out))
    self.train_sets = [np.flatnonzero(self.fold != k) for k in range(config.kfold.folds)]
    self.train_sets.append(np.flatnonzero(~held_out))
    height, width = self.data.frames.shape[2:4]
    self.layout = Layout(num_frames=config.data.num_frames, size=config.data.frame_size,
                         grid=config.data.fragment_grid, height=height, width=width)
    self.specs = model_specs(config)
    self.sampler = HostSampler(self.data, self.train_sets, self.layout,
                               groups=config.data.groups_per_batch,
                               per_group=config.data.videos_per_group, seed=config.seed)
    self.run = StackedRun(config, self.data, self.specs, self.layout)
    self.deadline = (time.monotonic() + config.train.stop_after_seconds
                     if config.train.stop_after_seconds > 0 else float("inf"))

  def _checkpoints(self, stage: str):
    import orbax.checkpoint as ocp
    return ocp.CheckpointManager(self.workdir.absolute() / "kfold" / stage,
                                 options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True))

  def _train_stage(self, stage: str, states, num_steps: int):
    """Trains `states` to `num_steps` of `stage`, resuming from its checkpoint; returns (states,
    finished)."""
    import orbax.checkpoint as ocp
    manager = self._checkpoints(stage)
    latest = manager.latest_step()
    if latest is not None:
      restored = manager.restore(latest, args=ocp.args.StandardRestore(checkpointing.state_tree(states)))
      states = states.replace(**restored)
      log.info("%s: resumed at step %d of %d", stage, latest, num_steps)
    start = int(jax.device_get(states.step[0]))
    step_fn = self.run.train_step(stage)
    base_rng = jax.random.PRNGKey(self.config.seed + (stage == FINETUNE))
    every = self.config.train.checkpoint_every_steps
    tick = time.perf_counter()
    for step in range(start, num_steps):
      states, step_metrics = step_fn(states, self.sampler.draw(stage, step), base_rng,
                                     self.run.arrays)
      done = step + 1
      if done % self.config.train.log_every_steps == 0 or done == num_steps:
        values = jax.device_get(step_metrics)
        rate = self.config.train.log_every_steps / (time.perf_counter() - tick)
        tick = time.perf_counter()
        log.info("%s step %d/%d  loss %s  (%.1f steps/s, %d models × %d videos)", stage, done,
                 num_steps, np.array2string(np.asarray(values["loss"])[:8], precision=3), rate,
                 len(self.specs), self.sampler.batch_size)
      if done % every == 0 or done == num_steps or time.monotonic() > self.deadline:
        manager.save(done, args=ocp.args.StandardSave(checkpointing.state_tree(states)), force=True)
        manager.wait_until_finished()
        if time.monotonic() > self.deadline and done < num_steps:
          log.warning("%s: stopping at step %d (train.stop_after_seconds); run again to resume",
                      stage, done)
          manager.close()
          return states, False
    manager.close()
    return states, True

  def train(self):
    """(finetuned states, finished)."""
    config = self.config
    pretrain_tx = optim.build_optimizer(
        _schedule_config(config.optim, config.pretrain.steps, config.pretrain.learning_rate), 1,
        freeze_backbone=False)
    finetune_tx = optim.build_optimizer(
        _schedule_config(config.optim, config.optim.steps, config.optim.learning_rate), 1,
        freeze_backbone=False)
    finetune_states = self.run.init_states(finetune_tx, config.seed)
    if self._checkpoints(FINETUNE).latest_step() is None and config.pretrain.steps > 0 and any(
        spec.pretrain for spec in self.specs):
      pretrained, finished = self._train_stage(
          PRETRAIN, self.run.init_states(pretrain_tx, config.seed), config.pretrain.steps)
      if not finished:
        return finetune_states, False
      use = jnp.asarray([spec.pretrain for spec in self.specs])
      params = jax.tree.map(
          lambda p, f: jnp.where(use.reshape((-1,) + (1,) * (p.ndim - 1)), p, f),
          pretrained.params, finetune_states.params)
      finetune_states = jax.jit(jax.vmap(lambda p: steps.TrainState.create(p, finetune_tx)))(params)
    return self._train_stage(FINETUNE, finetune_states, config.optim.steps)

  def evaluate(self, scores: np.ndarray) -> dict[str, Any]:
    return evaluate_folds(scores, self.data, self.specs, self.train_sets, self.test_sets,
                          self.config.kfold.folds)


def evaluate_folds(scores: np.ndarray, data: decoded_lib.DecodedSet, specs: list[ModelSpec],
                   train_sets: list[np.ndarray], test_sets: list[np.ndarray], num_folds: int
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
      fold_report(bits_per_pixel_line(data, train_sets[fold]), data, train_sets[fold],
                  test_sets[fold]) for fold in range(num_folds)]
  summary = {name: metrics.summarize_folds(reports) for name, reports in per_variant.items()}
  return {"per_fold": per_variant, "summary": summary, "ship_held_out": ship,
          "out_of_fold": out_of_fold, "num_encodes": len(data),
          "num_families": len(data.family_names), "num_sources": len(data.source_names)}


def _json_ready(value):
  if isinstance(value, dict):
    return {str(key): _json_ready(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_ready(item) for item in value]
  if isinstance(value, (np.floating, float)):
    return None if not np.isfinite(value) else float(value)
  if isinstance(value, (np.integer, np.bool_)):
    return value.item()
  return value


def ship_model(run: KFoldRun, states, scores: np.ndarray, out_dir: Path) -> Path | None:
  """Writes the ship variant's extra model (trained without the held-out media) as a standalone
  scorer that `inference.load_shipped_model` reads: params.msgpack (EMA weights, pixel-only
  tree) and model.json (id, config, calibration on its training encodes, provenance)."""
  from flax import serialization
  config = run.config
  index = next((i for i, spec in enumerate(run.specs)
                if spec.variant == config.kfold.ship_variant and spec.fold == config.kfold.folds),
               None)
  if index is None:
    return None
  spec = run.specs[index]
  if spec.container:
    raise ValueError("config.kfold.ship_variant must be a pixel-only variant (container=False)")
  params = jax.device_get(jax.tree.map(lambda leaf: leaf[index], states.ema_params))
  params["head"] = {key: value for key, value in params["head"].items() if key != "container"}
  # The shipped scorer computes in float32 wherever it runs (CPU inference has no fast bf16).
  params = jax.tree.map(lambda leaf: np.asarray(leaf, np.float32), params)
  train = run.train_sets[spec.fold]
  fitted = calibration.fit_calibration(scores[index][train], run.data.label[train])
  out_dir.mkdir(parents=True, exist_ok=True)
  (out_dir / inference.SHIPPED_PARAMS).write_bytes(serialization.msgpack_serialize(params))
  model_config = config.model.to_dict()
  model_config.update(container_features=False, dtype="float32")
  data = run.data
  card = {
      "id": config.kfold.ship_id,
      "config": {"model": model_config,
                 "data": {"sampling": spec.sampling, "num_frames": config.data.num_frames,
                          "frame_size": config.data.frame_size,
                          "fragment_grid": config.data.fragment_grid}},
      "calibration": fitted.to_dict(),
      "training": {
          "variant": spec.variant, "pretrain_steps": config.pretrain.steps if spec.pretrain else 0,
          "finetune_steps": config.optim.steps, "families": len(np.unique(data.family[train])),
          "sources": len(np.unique(data.source[train])), "encodes": len(train),
          "codecs": sorted(set(data.codec_names)), "held_out_media": list(config.kfold.hold_out_media),
          "label": "VMAF (libvmaf vmaf_v0.6.1 through imageio-ffmpeg's ffmpeg), mean over frames"},
  }
  (out_dir / inference.SHIPPED_CARD).write_text(json.dumps(_json_ready(card), indent=2))
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
  log.info("%d encodes of %d sources in %d families; %d folds; %d stacked models",
           len(run.data), len(run.data.source_names), len(run.data.family_names),
           config.kfold.folds, len(run.specs))
  states, finished = run.train()
  if not finished and not config.train.evaluate_when_stopped:
    return None
  scores = run.run.predict(states.ema_params, config.train.eval_batch_size)
  np.save(workdir / "scores.npy", scores)
  results = run.evaluate(scores)
  results["finetune_steps_done"] = int(jax.device_get(states.step[0]))
  table = metrics.format_fold_table(results["summary"])
  (workdir / "results.json").write_text(json.dumps(_json_ready(results), indent=2))
  (workdir / "results.md").write_text(table + "\n")
  ship_model(run, states, scores, workdir / "shipped")
  print(table)
  print(f"K-fold protocol done in {time.perf_counter() - started:.0f} s; results in "
        f"{workdir.absolute()}")
  return results

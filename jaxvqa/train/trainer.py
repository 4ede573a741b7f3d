"""The training loop: build the state, step, evaluate, checkpoint, resume; report held-out metrics.

    train_and_evaluate(config, workdir)
      ├─ open_run_data        prepared splits, group sampler (jaxvqa.data.datasets)
      ├─ create_train_state   model init (+ converted / IQA-pretrained weights), AdamW
      ├─ RunCheckpoints       resume from the newest save (periodic or best), if any
      ├─ loop: train_step ──▶ log (JSON lines, TensorBoard, progress bar)
      │        once:         first-call seconds of the train and eval steps (compile included)
      │        every epoch:  validation SRCC → best checkpoint, score calibration
      │        SIGTERM/SIGINT: save, then stop with TrainingInterrupted
      └─ test split: metrics of the best weights (EMA and raw) and the bits-per-pixel baseline

Randomness depends on (seed, step) only and the input stream restarts at the saved step, so a run
killed at any moment resumes to the parameters, best checkpoint and test metrics an uninterrupted
run reaches (tests/test_resume.py kills one at several points). One process at a time writes a
workdir: training holds WORKDIR/train.lock (checkpointing.lock_workdir).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import jax
import ml_collections
import numpy as np
import optax

from jaxvqa import config as config_lib, metrics
from jaxvqa.evaluate import baselines, calibration, split_predictions
from jaxvqa.serve import inference
from jaxvqa.train import checkpointing, first_call, losses, optim, parallel, steps
from jaxvqa.data import datasets, demo, pipeline
from jaxvqa.models import checkpoint_files, vqa
from jaxvqa.train.run_log import RunLog, TrainingInterrupted, configure_logging

log = logging.getLogger(__name__)
COMPILING_NOTE = "compiling the training step (first step only)..."
# metrics.jsonl keys of the seconds each step's first call took, compilation (or a load from the
# persistent compilation cache) included: one line per process that trains, resumed runs too.
FIRST_CALL_PREFIX = "first_call_seconds/"

GROUPING_FILE = "grouping.txt"  # the run's coarse-stage groups, one line (data.grouping)


class NonFiniteTrainingError(RuntimeError):
  """Raised after too many consecutive steps with non-finite loss or gradients."""


@contextlib.contextmanager
def _stop_requests() -> Iterator[list[int]]:
  """Collects SIGTERM/SIGINT into the yielded list instead of dying mid-step, so the loop can save
  first. A second signal of the same kind acts as it did before (a second Ctrl-C aborts)."""
  received: list[int] = []
  if threading.current_thread() is not threading.main_thread():  # only it may set handlers
    yield received
    return
  previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}

  def request_stop(signum, frame):
    del frame
    received.append(signum)
    signal.signal(signum, previous[signum])

  for signum in previous:
    signal.signal(signum, request_stop)
  try:
    yield received
  finally:
    for signum, handler in previous.items():
      signal.signal(signum, handler)


def _remove_unfinished_saves(workdir: Path) -> None:
  """Deletes what saves killed while Orbax wrote them left (`STEP.orbax-checkpoint-tmp-*` beside
  the finished saves, never read). Only the workdir's one writer (`lock_workdir` held) may: another
  process's save in progress looks the same."""
  for kind in ("checkpoints", "best"):
    directory = workdir / kind
    for path in sorted(directory.iterdir()) if directory.is_dir() else ():
      if ".orbax-checkpoint-tmp" in path.name:
        shutil.rmtree(path, ignore_errors=True)
        log.info("removed %s, a save killed before it was finished", path)


def build_model(model_config) -> vqa.VQAModel | vqa.IQAModel:
  """config.model → the video model, or its spatial half for IQA pre-training (task "iqa")."""
  return (
      vqa.build_iqa_model(model_config)
      if model_config.task == "iqa"
      else vqa.build_vqa_model(model_config)
  )


def load_initial_weights(params: Any, init_config, backbone_config=None) -> Any:
  """Replaces every weight (a shipped model), the backbone (converted ImageNet weights) or the
  spatial half (IQA run) of `params`; a converted backbone that does not fit names the fields of
  `backbone_config` (config.model.backbone) its model.json contradicts."""
  if init_config.get("model"):
    return start_from_model(params, init_config.model)
  if init_config.spatial:
    try:
      spatial, _ = checkpointing.load_params(init_config.spatial, which="best")
    except FileNotFoundError:  # a run too short to validate has periodic saves only
      spatial, _ = checkpointing.load_params(init_config.spatial, which="latest")
    log.info("starting the spatial modules from the IQA run in %s", init_config.spatial)
    params = vqa.transfer_spatial_params(spatial, params)
  if init_config.backbone:
    saved = None  # the converted directory's architecture, once read
    try:
      variables, saved = checkpoint_files.load_backbone(init_config.backbone)
      params = vqa.transfer_spatial_params({"backbone": variables["params"]}, params)
    except (FileNotFoundError, ValueError) as error:
      differences = (
          checkpoint_files.architecture_differences(saved, backbone_config)
          if saved is not None and backbone_config is not None
          else ""
      )
      raise config_lib.ConfigError(
          f"config.init.backbone={init_config.backbone!r}: {error}"
          + (f": {differences}" if differences else "")
      )
    log.info("starting the backbone from converted weights in %s", init_config.backbone)
  return params


def read_start_model(init_model: str) -> tuple[dict, Any]:
  """(card, params) of config.init.model: "shipped" (the model inside jaxvqa) or a directory
  holding model.json and params.msgpack (`inference.read_model_directory`)."""
  return inference.read_model_directory(None if init_model == "shipped" else init_model)


def start_from_model(params: Any, directory: str) -> Any:
  """The weights of a shipped model ("shipped": the one inside jaxvqa; or a directory holding
  model.json and params.msgpack) in place of `params`, which must have the same tree and shapes.

  Raises config.ConfigError naming `config.init.model` and what does not fit.
  """
  card, weights = read_start_model(directory)
  mismatches = inference.mismatched_params(params, weights)
  if mismatches:
    raise config_lib.ConfigError(
        f"config.init.model: the weights of {card.get('id', directory)} do not fit this run's "
        f"config.model (the model its model.json describes must be used): "
        + "; ".join(mismatches[:5])
        + (f"; and {len(mismatches) - 5} more" if len(mismatches) > 5 else "")
    )
  log.info("starting every weight from %s (%s)", card.get("id", "?"), directory)
  return jax.tree.map(lambda like, value: np.asarray(value, like.dtype), params, weights)


def create_train_state(config, model, frames, steps_per_epoch: int, mesh) -> steps.TrainState:
  params = load_initial_weights(
      steps.init_params(model, frames, config.seed), config.init, config.model.backbone
  )
  tx = optim.build_optimizer(
      config.optim, steps_per_epoch, freeze_backbone=config.model.freeze_backbone
  )
  return parallel.replicate(steps.TrainState.create(params, tx), mesh)


def _host_metrics(metrics_tree: dict[str, jax.Array]) -> dict[str, float]:
  return {name: float(value) for name, value in jax.device_get(metrics_tree).items()}


class Trainer:
  """One training run; `run()` trains to the configured number of epochs and returns test reports."""

  def __init__(
      self,
      config: ml_collections.ConfigDict,
      workdir: str | Path,
      *,
      num_devices: int | None = None,
  ):
    config = config.copy_and_resolve_references()
    for field, (old, new) in config_lib.apply_model_preset(config).items():
      log.info("config.model.preset=%s sets %s: %s → %s", config.model.preset, field, old, new)
    config_lib.validate(config)
    # config.json records where the data was cached, so eval.py reads this run's data set whatever
    # JAXVQA_CACHE says when it runs.
    config.data.cache_dir = str(demo.cache_dir(config.data.cache_dir))
    self.config = config
    self.workdir = Path(workdir)
    parallel.initialize_distributed()
    self.mesh = parallel.make_mesh(num_devices)
    self.global_batch_size = config.data.groups_per_batch * config.data.videos_per_group
    parallel.check_batch_size(
        self.global_batch_size, self.mesh, "groups_per_batch × videos_per_group"
    )
    self.data = datasets.open_run_data(config.data, seed=config.seed)
    log.info("groups of the coarse stage: %s", self.data.grouping)
    self.model = build_model(config.model)
    self.total_steps = max(1, round(config.optim.epochs * self.data.steps_per_epoch))
    self.learning_rate = optim.learning_rate_schedule(config.optim, self.data.steps_per_epoch)
    self.loss_weights = losses.LossWeights(**config.loss)
    self.train_step = first_call.FirstCallTimer(
        steps.jit_train_step(self.model, self.loss_weights, config.optim.ema_decay, config.seed + 1)
    )
    self.score_step = first_call.FirstCallTimer(steps.jit_score_step(self.model))
    self._first_calls_reported = False
    self.checkpoints = checkpointing.RunCheckpoints(
        self.workdir, keep=config.train.keep_checkpoints
    )
    self.is_chief = jax.process_index() == 0

  def evaluate(self, params, split: str) -> split_predictions.SplitPredictions:
    return split_predictions.predict_split(
        self.score_step,
        params,
        self.data.splits[split],
        self.data.frames,
        batch_size=self.config.data.eval_batch_size,
        mesh=self.mesh,
        num_workers=self.config.data.num_workers,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )

  def _validate(self, state, step: int, run_log: RunLog, best_srcc: float) -> float:
    """Scores the validation split with the EMA weights; saves a best checkpoint on a new high."""
    split = datasets.VALIDATION if datasets.VALIDATION in self.data.splits else datasets.TRAIN
    predictions = self.evaluate(state.ema_params, split)
    if len(predictions.score) < metrics.MIN_SAMPLES:
      log.warning(
          "the %s split has %d decodable examples; correlations need %d, so no best "
          "checkpoint is chosen",
          split,
          len(predictions.score),
          metrics.MIN_SAMPLES,
      )
      return best_srcc
    scale = self.data.label_scale
    report = predictions.report(name=f"{split}@{step}", scale=scale)
    run_log.write(
        step,
        {
            f"{split}/{key}": value
            for key, value in report.to_dict().items()
            if isinstance(value, (int, float))
        },
    )
    srcc = report.srcc if np.isfinite(report.srcc) else -1.0
    if srcc > best_srcc:
      self.checkpoints.save(
          state,
          {
              **self._meta(step),
              "best_metric": srcc,
              "validation": report.to_dict(),
              # Fitted on the stored label, saved in the set's units (calibration docstring).
              "calibration": calibration.fit_calibration(predictions.score, predictions.label)
              .in_units(scale)
              .to_dict(),
          },
          best=True,
      )
      return srcc
    return best_srcc

  def _report_first_calls(self, run_log: RunLog, step: int, *, last: bool) -> None:
    """Logs and prints, once, the first-call seconds of the train and eval steps: when both are
    known, or at the `last` step of this run with those that are."""
    timers = {"train_step": self.train_step, "eval_step": self.score_step}
    seconds = {name: timer.seconds for name, timer in timers.items() if timer.seconds is not None}
    if self._first_calls_reported or not seconds or (len(seconds) < len(timers) and not last):
      return
    self._first_calls_reported = True
    run_log.write(step, {FIRST_CALL_PREFIX + name: value for name, value in seconds.items()})
    described = ", ".join(
        f"{name.replace('_', ' ')} {value:.1f} s" for name, value in seconds.items()
    )
    run_log.note(f"first calls, compilation included: {described}")

  def _meta(self, step: int) -> dict:
    return {
        "step": step,
        "epoch": step / self.data.steps_per_epoch,
        "global_batch_size": self.global_batch_size,
    }

  def _learning_rate(self, state, step: int) -> float:
    """The head's rate in the update of `step` (the backbone's is backbone_lr_multiplier times it).

    Updates skipped as non-finite do not advance optax's schedule, so they are counted out.
    """
    skipped = int(jax.device_get(optax.tree_utils.tree_get(state.opt_state, "total_notfinite")))
    return float(self.learning_rate(max(step - 1 - skipped, 0)))

  def lock_workdir(self) -> contextlib.AbstractContextManager:
    """The workdir's writer lock (checkpointing.lock_workdir), taken by the chief process only:
    the other hosts of a multi-host run write the same workdir with it, through Orbax."""
    return checkpointing.lock_workdir(self.workdir) if self.is_chief else contextlib.nullcontext()

  def train(self, *, stop_after_step: int | None = None) -> steps.TrainState:
    """Trains from the newest checkpoint (or from scratch) to the end, or to `stop_after_step`.

    Stopping early is how a job on a time-sliced or preemptible machine hands over to its next
    invocation: it saves, and the next run resumes from that save. SIGTERM or SIGINT does the
    same and then raises TrainingInterrupted. Raises WorkdirLockedError when another process is
    training in the workdir, CheckpointError when the save to resume from cannot be read.
    """
    with self.lock_workdir(), _stop_requests() as stop_signals:
      return self._train(stop_after_step, stop_signals)

  def _train(self, stop_after_step: int | None, stop_signals: list[int]) -> steps.TrainState:
    config = self.config
    state = create_train_state(
        config, self.model, self.data.frames, self.data.steps_per_epoch, self.mesh
    )
    checkpointing.check_resumed_config(self.workdir, config)
    if self.is_chief:
      _remove_unfinished_saves(self.workdir)
    state, meta = self.checkpoints.restore_newest(state)
    start_step = int(jax.device_get(state.step))
    best_srcc = float(meta["best_srcc"]) if meta else -1.0
    if meta:
      log.info("resuming from step %d of %d", start_step, self.total_steps)
    if self.is_chief:
      checkpointing.save_config(self.workdir, config)
    end_step = (
        self.total_steps if stop_after_step is None else min(stop_after_step, self.total_steps)
    )
    end_step = max(end_step, start_step)
    saved_step = self.checkpoints.latest_step()
    loader = iter(
        pipeline.train_loader(
            self.data.splits[datasets.TRAIN],
            self.data.sampler,
            self.data.frames,
            seed=config.seed,
            start_step=start_step,
            num_steps=max(0, end_step - start_step),
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            num_workers=config.data.num_workers,
        )
    )
    eval_every = max(1, config.train.eval_every_epochs * self.data.steps_per_epoch)
    with RunLog(
        self.workdir,
        enabled=self.is_chief,
        total_steps=self.total_steps,
        initial_step=start_step,
        show_progress=config.train.progress_bar,
    ) as run_log:
      run_log.write_config(start_step, config.to_dict())
      run_log.write_text(start_step, "grouping", self.data.grouping)
      if start_step < end_step:
        # The first step compiles the training program (30-60 s on a CPU, longer for a large
        # model) while the bar still shows 0/N; say so rather than look stuck.
        run_log.note(COMPILING_NOTE)
      tick, videos_since = time.perf_counter(), 0
      for step in range(start_step, end_step):
        state, step_metrics = self.train_step(state, parallel.global_batch(next(loader), self.mesh))
        done = step + 1
        videos_since += self.global_batch_size
        run_log.advance()
        if done % config.train.log_every_steps == 0 or done == self.total_steps:
          values = _host_metrics(step_metrics)
          streak = int(jax.device_get(state.nonfinite_streak))
          now = time.perf_counter()
          values["videos_per_second"] = videos_since / (now - tick)
          values["learning_rate"] = self._learning_rate(state, done)
          tick, videos_since = now, 0
          run_log.write(done, values, progress={"loss": values["loss"]})
          if streak >= config.optim.max_consecutive_nonfinite:
            raise NonFiniteTrainingError(
                f"{streak} consecutive steps up to step {done} had non-finite loss or gradients; "
                f"parameters were left unchanged by them and the last good checkpoint is in "
                f"{self.workdir / 'checkpoints'}. Lower config.optim.learning_rate or check the data."
            )
        paused = time.perf_counter()
        if done % eval_every == 0 or done == self.total_steps:
          best_srcc = self._validate(state, done, run_log, best_srcc)
        self._report_first_calls(run_log, done, last=done == end_step or bool(stop_signals))
        if (
            done % config.train.checkpoint_every_steps == 0
            or done in (end_step, self.total_steps)
            or stop_signals
        ):
          self.checkpoints.save(state, {**self._meta(done), "best_srcc": best_srcc})
          saved_step = done
        if stop_signals:
          self.checkpoints.wait()
          raise TrainingInterrupted(done, stop_signals[0])
        tick += time.perf_counter() - paused  # videos_per_second counts training time only
    if (
        saved_step != end_step
    ):  # resumed from a best save at end_step, killed before its periodic save
      self.checkpoints.save(state, {**self._meta(end_step), "best_srcc": best_srcc})
    self.checkpoints.wait()
    if stop_signals:  # arrived after the last step: all is saved, but the caller asked to stop
      raise TrainingInterrupted(end_step, stop_signals[0])
    return state

  def test_reports(self, state) -> list[metrics.QualityReport]:
    """Held-out reports: best EMA and raw weights (calibrated), the weights the run started from
    when they were a shipped model's (config.init.model; with that model's calibration), and the
    bits-per-pixel baseline."""
    split = datasets.TEST if datasets.TEST in self.data.splits else datasets.VALIDATION
    best_state, best_meta = self.checkpoints.restore_best(state)
    best_calibration = calibration.from_saved(best_meta["calibration"]) if best_meta else None
    reports = []
    for label, params in (
        ("model (EMA weights)", best_state.ema_params),
        ("model (raw weights)", best_state.params),
    ):
      predictions = self.evaluate(params, split)
      reports.append(
          predictions.report(f"{label}, {split}", best_calibration, self.data.label_scale)
      )
    start = self.config.init.get("model")
    if start:
      try:
        card, weights = read_start_model(start)
      except checkpointing.CheckpointError as error:  # moved since training began: report the rest
        log.warning("no row for the starting model: %s", error)
      else:
        predictions = self.evaluate(parallel.replicate(weights, self.mesh), split)
        reports.append(
            predictions.report(
                f"{card.get('id', start)} as shipped (no fine-tuning), {split}",
                calibration.from_saved(card.get("calibration")),
                self.data.label_scale,
            )
        )
    baseline = baselines.bits_per_pixel_baseline(
        self.data.splits[datasets.TRAIN], self.data.splits[split]
    )
    if baseline is not None:
      reports.append(
          baseline.report(f"bits-per-pixel linear baseline, {split}", scale=self.data.label_scale)
      )
    return reports


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | Path, *, num_devices: int | None = None
) -> list[metrics.QualityReport]:
  """Trains (or resumes) the configured run, then prints and saves held-out metrics.

  The test metrics also go to TensorBoard: as scalars `test/<report>/<metric>` and, with the
  config, as an HParams session (tensorboard/hparams/). Like the validation scalars, their RMSE
  is in the data set's own units (`jaxvqa.data.label_scale`); the losses are unitless.
  """
  configure_logging()
  trainer = Trainer(config, workdir, num_devices=num_devices)
  with trainer.lock_workdir():
    state = trainer.train()
    reports = trainer.test_reports(state)
    trainer.checkpoints.close()
    if trainer.is_chief:
      with RunLog(
          workdir,
          enabled=True,
          total_steps=trainer.total_steps,
          initial_step=trainer.total_steps,
          show_progress=False,
      ) as run_log:
        run_log.write_test_reports(trainer.total_steps, reports, trainer.config.to_dict())
      print(
          f"scores and RMSE in {trainer.data.label_scale.describe()}, the labels' own units; "
          "correlations against quality"
      )
      print(metrics.format_table(reports))
      print(f"groups of the coarse stage: {trainer.data.grouping}")
      (Path(workdir) / GROUPING_FILE).write_text(trainer.data.grouping + "\n")
      (Path(workdir) / "results.json").write_text(
          json.dumps([report.to_dict() for report in reports], indent=2)
      )
      print(f"checkpoints and logs in {Path(workdir).absolute()}")
  return reports

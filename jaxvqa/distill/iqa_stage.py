"""The paper's IQA pre-training stage, made here: the distilled spatial module learns image quality
from photographs × synthetic distortions × levels, labelled by MS-SSIM (docs/METHOD.md §10).

The paper pre-trains its spatial module (SwinV2 + multi-stage fusion + a score head) on four IQA
sets before the video stage. None can be downloaded here; KADID-10K's recipe can be remade
(`jaxvqa make-iqa-set` writes such a set as PNGs). This stage makes the same images in memory, so
that it runs where no TFDS data set can be built (the GPU machine), and trains on them right after
the distillation:

  images   each photo's pristine reference (`iqa_set.pristine_reference`: a clean downscale to
           `reference_size` on the short side) and every distortion at every level
           (`iqa_set.distorted_versions`; H.264 intra only where ffmpeg is installed)
  label    MS-SSIM of the whole image against its reference (1 for the reference)
  crops    `crops_per_image` native-pixel crops of `data.crop_size`, at the same places in every
           version of one photo, each labelled with its image's MS-SSIM (the distortions are
           spatially uniform, so a crop carries its image's degradation)
  batches  `photos_per_batch` photos × the rest of the batch in crops of each, so the rank term
           has pairs of one scene
  loss     PLCC over the batch + the rank loss within each photo (`losses.total_loss`, group =
           photo): the paper's IQA stage trains on opinion scores with PLCC and rank terms
  held out the photos `crops.held_out_names` holds out of the distillation, never trained on;
           their SRCC/PLCC against MS-SSIM after each chunk

Output: WORKDIR/iqa_backbone (the `jaxvqa convert-weights` layout), which `config.init.<name>` of
a K-fold run reads like the distilled backbone. Resumable (Orbax, WORKDIR/iqa/checkpoints).
"""

from __future__ import annotations

import functools
import json
import logging
import multiprocessing
import os
import time
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from jaxvqa.train import losses, optim, parallel, steps
from jaxvqa.config import require
from jaxvqa.data import distortions, iqa_set, ms_ssim
from jaxvqa.distill import crops as crops_lib
from jaxvqa.models import vqa

log = logging.getLogger(__name__)

BACKBONE_DIR = "iqa_backbone"
BANK_FILE = "iqa_crops.npz"
LOG_FILE = "iqa_log.jsonl"


def available_distortions() -> tuple[str, ...]:
  """Every distortion this machine can make: H.264 intra needs the ffmpeg of `imageio-ffmpeg`."""
  try:
    import imageio_ffmpeg  # noqa: F401
  except ImportError:
    return tuple(name for name in distortions.DISTORTIONS if name != "h264_intra")
  return tuple(distortions.DISTORTIONS)


def validate_config(iqa_config, crop_size: int) -> None:
  require(
      iqa_config.reference_size >= max(ms_ssim.MIN_SIDE, crop_size),
      "iqa.reference_size",
      f"must be at least {max(ms_ssim.MIN_SIDE, crop_size)} (MS-SSIM's 5 scales and one crop), "
      f"got {iqa_config.reference_size}",
  )
  unknown = sorted(set(_names(iqa_config.distortions)) - set(distortions.DISTORTIONS))
  require(
      not unknown, "iqa.distortions", f"unknown {unknown}; known: {list(distortions.DISTORTIONS)}"
  )
  require(
      iqa_config.batch_size % iqa_config.photos_per_batch == 0,
      "iqa.batch_size",
      f"must be a multiple of iqa.photos_per_batch ({iqa_config.photos_per_batch})",
  )
  for field in ("steps", "batch_size", "learning_rate", "crops_per_image", "levels"):
    require(iqa_config[field] > 0, f"iqa.{field}", f"must be > 0, got {iqa_config[field]!r}")


def _names(distortion_list: str) -> tuple[str, ...]:
  return tuple(name.strip() for name in distortion_list.split(",") if name.strip())


def _photo_crops(task) -> tuple[np.ndarray, np.ndarray] | None:
  """(crops uint8 [V·K, S, S, 3], MS-SSIM [V·K]) of one photo's V versions, or None."""
  photo, settings, crop_size, crops_per_image = task
  data = Path(photo).read_bytes()
  ref_id = iqa_set.reference_id(Path(photo), data)
  try:
    reference = iqa_set.pristine_reference(data, settings.size)
  except iqa_set.IqaSetError as error:
    log.info("IQA stage: skipping %s (%s)", photo, error)
    return None
  rng = np.random.default_rng([settings.seed, zlib.crc32(ref_id.encode())])  # crop places
  height, width = reference.shape[:2]
  tops = rng.integers(0, height - crop_size + 1, crops_per_image)
  lefts = rng.integers(0, width - crop_size + 1, crops_per_image)
  score = ms_ssim.ReferenceScorer(reference)
  versions = [(reference, 1.0)] + [
      (image, score(image))
      for _, _, _, image in iqa_set.distorted_versions(reference, ref_id, settings)
  ]
  crops = [
      image[top : top + crop_size, left : left + crop_size]
      for image, _ in versions
      for top, left in zip(tops, lefts)
  ]
  labels = np.repeat([label for _, label in versions], crops_per_image)
  return np.stack(crops).astype(np.uint8), labels.astype(np.float32)


def build_bank(photos, iqa_config, crop_size: int, held_out_fraction: float, seed: int, jobs: int):
  """{'crops', 'label', 'photo', 'held_out', 'names'} of the photos that can be references."""
  settings = iqa_set.Settings(
      size=iqa_config.reference_size,
      levels=iqa_config.levels,
      seed=seed,
      distortions=_names(iqa_config.distortions) or available_distortions(),
  )
  tasks = [(str(path), settings, crop_size, iqa_config.crops_per_image) for path in photos]
  if jobs > 1 and len(tasks) > 1:
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
      made = pool.map(_photo_crops, tasks, chunksize=1)
  else:
    made = [_photo_crops(task) for task in tasks]
  kept = [(Path(path).name, result) for path, result in zip(photos, made) if result is not None]
  if len(kept) < 2:
    raise ValueError(f"the IQA stage needs 2 usable photos; {len(kept)} of {len(photos)} are")
  names = [name for name, _ in kept]
  held_names = crops_lib.held_out_names(names, held_out_fraction)
  photo = np.concatenate([np.full(len(r[1]), i, np.int32) for i, (_, r) in enumerate(kept)])
  return dict(
      crops=np.concatenate([r[0] for _, r in kept]),
      label=np.concatenate([r[1] for _, r in kept]),
      photo=photo,
      held_out=np.asarray([names[i] in held_names for i in photo]),
      names=np.asarray(names),
  )


def _load_or_build_bank(config, workdir: Path, photos) -> dict:
  path = workdir / BANK_FILE
  if path.exists():
    with np.load(path) as stored:
      return dict(stored)
  started = time.perf_counter()
  bank = build_bank(
      photos,
      config.iqa,
      config.data.crop_size,
      config.data.held_out_fraction,
      config.seed,
      config.data.jobs or os.cpu_count(),
  )
  log.info(
      "IQA stage: %d crops of %d photos (%d held out), labels %.3f-%.3f, in %.0f s",
      len(bank["label"]),
      len(bank["names"]),
      int(np.unique(bank["photo"][bank["held_out"]]).size),
      float(bank["label"].min()),
      float(bank["label"].max()),
      time.perf_counter() - started,
  )
  np.savez(path, **bank)
  return bank


def _batch_rows(bank: dict, train_photos: np.ndarray, iqa_config, seed: int, step: int):
  """Rows of `step`'s batch: photos_per_batch training photos, an equal share of crops of each."""
  rng = np.random.default_rng([seed, step, 7])
  chosen = rng.choice(train_photos, iqa_config.photos_per_batch, replace=False)
  per_photo = iqa_config.batch_size // iqa_config.photos_per_batch
  return np.concatenate([rng.choice(np.flatnonzero(bank["photo"] == p), per_photo) for p in chosen])


def _loss_weights(iqa_config) -> losses.LossWeights:
  return losses.LossWeights(plcc=1.0, rank=float(iqa_config.rank), group=0.0)


def _make_train_step(model, weights: losses.LossWeights, ema_decay: float):
  @jax.jit
  def train_step(state, crops_all, rows, labels, photos, rng):
    """One step on the bank's crops `rows` (gathered here, inside the program)."""
    crops = crops_all[rows]
    rngs = {steps.DROPOUT_RNG: jax.random.fold_in(rng, state.step)}
    mask = jnp.ones(labels.shape, bool)

    def loss_fn(params):
      output = model.apply({"params": params}, crops, train=True, rngs=rngs)
      return losses.total_loss(output.score, labels, output.feature, photos, mask, weights)

    (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state, finite = steps.apply_gradients(state, loss, grads, ema_decay)
    return state, {"loss": loss, **parts, "finite": finite.astype(jnp.float32)}

  return train_step


@functools.lru_cache(maxsize=4)
def _predict_program(model):
  """The scorer, one per model: a resume in the same process (the tests) reuses its compile."""
  return jax.jit(lambda params, crops: model.apply({"params": params}, crops).score)


def held_out_report(predict, bank: dict, batch_size: int) -> dict[str, float]:
  """SRCC/PLCC against MS-SSIM on the held-out photos' crops, and the mean SRCC within a photo."""
  rows = np.flatnonzero(bank["held_out"])
  # The last batch is padded with its own last crop: one batch shape, so one compiled program.
  padded = np.concatenate([rows, np.full(-len(rows) % batch_size, rows[-1])])
  scores = np.concatenate(
      [
          np.asarray(predict(bank["crops"][padded[i : i + batch_size]]))
          for i in range(0, len(padded), batch_size)
      ]
  )[: len(rows)]
  labels = bank["label"][rows]
  within = [
      scipy.stats.spearmanr(scores[bank["photo"][rows] == p], labels[bank["photo"][rows] == p])[0]
      for p in np.unique(bank["photo"][rows])
  ]
  return {
      "iqa/held_out_srcc": float(scipy.stats.spearmanr(scores, labels)[0]),
      "iqa/held_out_plcc": float(scipy.stats.pearsonr(scores, labels)[0]),
      "iqa/held_out_within_photo_srcc": float(np.nanmean(within)),
  }


def run_iqa_stage(config, workdir: Path, photos, start_backbone) -> dict[str, float]:
  """Trains (or resumes) the IQA stage from `start_backbone` params; writes WORKDIR/iqa_backbone
  and returns the held-out report."""
  import orbax.checkpoint as ocp

  from jaxvqa.train import checkpointing
  from jaxvqa.distill import loop

  iqa = config.iqa
  validate_config(iqa, config.data.crop_size)
  bank = _load_or_build_bank(config, workdir, photos)
  train_photos = np.unique(bank["photo"][~bank["held_out"]])
  require(
      len(train_photos) >= iqa.photos_per_batch,
      "iqa.photos_per_batch",
      f"is {iqa.photos_per_batch}, but only {len(train_photos)} photos train",
  )
  model = vqa.build_iqa_model(config.model)
  size = config.data.crop_size
  tx = optim.build_optimizer(
      dict(
          learning_rate=iqa.learning_rate,
          backbone_lr_multiplier=1.0,
          weight_decay=config.optim.weight_decay,
          warmup_epochs=min(iqa.warmup_steps, iqa.steps // 2),
          epochs=iqa.steps,
          grad_clip_norm=config.optim.grad_clip_norm,
      ),
      1,
      freeze_backbone=False,
  )

  def init_params(rng):
    return model.init(rng, jnp.zeros((1, size, size, 3)))["params"]

  manager = ocp.CheckpointManager(
      workdir / "iqa" / "checkpoints",
      options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True),
  )
  latest = manager.latest_step()
  if latest is None:
    params = steps.on_host(jax.jit(init_params), jax.random.PRNGKey(config.seed))
    params = vqa.transfer_spatial_params({"backbone": start_backbone}, params)
    # Created under jit: eagerly, each optimizer-state leaf would compile its own program.
    state = jax.jit(lambda p: steps.TrainState.create(p, tx))(params)
  else:
    # The restore replaces every value, so the state is only traced for its shapes (the start is
    # still checked against them): a resume compiles no init.
    params = jax.eval_shape(init_params, jax.random.PRNGKey(config.seed))
    params = vqa.transfer_spatial_params({"backbone": start_backbone}, params)
    state = jax.eval_shape(lambda p: steps.TrainState.create(p, tx), params)
    target = checkpointing.on_first_device(checkpointing.state_tree(state))
    restored = manager.restore(latest, args=ocp.args.StandardRestore(target))
    state = state.replace(**restored)
    log.info("IQA stage: resumed at step %d of %d", latest, iqa.steps)
  train_step = _make_train_step(model, _loss_weights(iqa), config.optim.ema_decay)
  predict = _predict_program(model)
  mesh = parallel.make_mesh()
  crops_on_device = parallel.replicate(jnp.asarray(bank["crops"]), mesh)
  # Where the step's outputs land (beside the replicated crops): a state elsewhere would make the
  # second step compile the program again for the new input placement.
  state = parallel.replicate(state, mesh)
  rng = jax.random.PRNGKey(config.seed + 1)
  tick = time.perf_counter()
  for step in range(int(jax.device_get(state.step)), iqa.steps):
    rows = _batch_rows(bank, train_photos, iqa, config.seed, step)
    state, metrics = train_step(
        state,
        crops_on_device,
        jnp.asarray(rows),
        jnp.asarray(bank["label"][rows]),
        jnp.asarray(bank["photo"][rows]),
        rng,
    )
    done = step + 1
    if done % config.train.log_every_steps == 0 or done == iqa.steps:
      values = {k: float(v) for k, v in jax.device_get(metrics).items()}
      values["crops_per_s"] = (
          config.train.log_every_steps * iqa.batch_size / (time.perf_counter() - tick)
      )
      tick = time.perf_counter()
      log.info("IQA stage step %d/%d  %s", done, iqa.steps, loop.format_report(values))
      _append(workdir, {"step": done, **values})
    if done % config.train.checkpoint_every_steps == 0 or done == iqa.steps:
      manager.save(done, args=ocp.args.StandardSave(checkpointing.state_tree(state)), force=True)
      manager.wait_until_finished()
      report = held_out_report(lambda c: predict(state.ema_params, c), bank, iqa.batch_size)
      log.info("IQA stage step %d held out: %s", done, loop.format_report(report))
      _append(workdir, {"step": done, **report})
  manager.close()
  report = held_out_report(lambda c: predict(state.ema_params, c), bank, iqa.batch_size)
  loop.write_backbone(workdir, state.ema_params, config.model, BACKBONE_DIR)
  return report


def _append(workdir: Path, record: dict) -> None:
  with open(workdir / LOG_FILE, "a") as out:
    out.write(json.dumps(record) + "\n")

"""Many models trained as one program: the stacked state, the vmapped step, batched scoring.

    uint8 frames [N, F, H, W, 3] on the device ─┐
    a host draw (indices per fold) ─────────────┼─▶ clips per model [M, B, T, S, S, 3]
    stacked TrainState [M, ...] ────────────────┘     ─▶ vmap(one AdamW step) ─▶ [M, ...]

Every model has the same architecture; what differs per model (its fold, its sampling mode, its
loss weights, whether it reads container features) is data, so one compilation serves them all.
Used by the K-fold protocol (jaxvqa/kfold/protocol.py).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxvqa.train import losses, steps
from jaxvqa.data import decoded as decoded_lib
from jaxvqa.data import video
from jaxvqa.data.device_clips import Layout, evaluation_draw, gather_clips
from jaxvqa.models import vqa

# The paper's terms (losses.LossWeights) and two of ours over the encodes of one source (the
# batches are sources × rungs), which ask directly for what a no-reference model must see, how
# compression changed the same content: "source_rank", the rank loss over those pairs, and
# "source_plcc", the PLCC of their differences (losses.in_group_plcc_loss), which asks for
# differences in proportion to the label's and so for a score that separates a bad encode from a
# good one by as much as the label does (what `jaxvqa doctor` checks).
PAPER_LOSS_TERMS = ("plcc", "l1", "rank", "all_pairs_rank", "group")
SOURCE_LOSS_TERMS = ("source_rank", "source_plcc")
LOSS_TERMS = PAPER_LOSS_TERMS + SOURCE_LOSS_TERMS
# Every term but the contrastive one reads the score: a variant needs one of them.
SCORE_LOSS_TERMS = tuple(term for term in LOSS_TERMS if term != "group")
PRETRAIN, FINETUNE = "pretrain", "finetune"
HEVC_CODECS = ("libx265",)

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """One stacked model: which variant, trained on which fold's complement."""

  variant: str
  fold: int  # 0..K-1, or K for the "ship" model
  sampling: str  # "fragments" or "resize_crop"
  pretrain: bool
  container: bool
  loss_weights: tuple[float, ...]  # in LOSS_TERMS order
  margin: float  # m of the rank terms in the VMAF stage
  detail: bool = False  # the head also reads DetailStatistics (models/vqa.py)
  embedding: bool = True  # the head reads the video embedding (False: detail statistics only)
  statistics: bool = False  # the head also reads scene_statistics (models/scene_statistics.py)
  start: str = ""  # a key of config.init naming the backbone it starts from ("" = random init)


def weighted_loss(
    score,
    label,
    projection,
    group,
    source,
    mask,
    weights,
    *,
    temperature: float,
    margin: float,
    contrastive_variant: str,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Σ weights[i]·term_i over LOSS_TERMS with traced weights [len(LOSS_TERMS)] and margin
  (losses.total_loss takes static ones and skips zero terms; stacked models need one program for
  every weighting).

  group: [B] bitrate group of each video; source: [B] its source content."""
  terms = {
      "plcc": losses.plcc_loss(score, label, mask),
      "l1": losses.l1_loss(score, label, mask),
      "rank": losses.in_group_rank_loss(score, label, group, mask, margin),
      "all_pairs_rank": losses.rank_loss(score, label, mask, margin),
      "group": losses.group_contrastive_loss(
          projection, group, mask, temperature, contrastive_variant
      ),
      "source_rank": losses.in_group_rank_loss(score, label, source, mask, margin),
      "source_plcc": losses.in_group_plcc_loss(score, label, source, mask),
  }
  total = sum(weights[i] * terms[name] for i, name in enumerate(LOSS_TERMS))
  return total, terms


def _model_step(
    state: steps.TrainState,
    clips,
    label,
    group,
    source,
    container,
    gates,
    weights,
    margin,
    rng,
    *,
    model,
    loss_config,
    ema_decay,
):
  """One AdamW step of one model (vmapped over the stack)."""
  mask = jnp.ones(label.shape, bool)

  def loss_fn(params):
    output = model.apply(
        {"params": params},
        clips,
        None,
        container,
        train=True,
        **gates,
        rngs={steps.DROPOUT_RNG: rng},
    )
    return weighted_loss(
        output.score,
        label,
        output.projection,
        group,
        source,
        mask,
        weights,
        temperature=loss_config.temperature,
        margin=margin,
        contrastive_variant=loss_config.contrastive_variant,
    )

  (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  new_state, _ = steps.apply_gradients(state, loss, grads, ema_decay)
  return new_state, {"loss": loss, **terms}


@dataclasses.dataclass(frozen=True)
class PerModel:
  """What each stacked model [M] is, as arrays the jitted programs read."""

  fold: jax.Array  # int [M]: the fold whose batch the model trains on
  uses_container: jax.Array  # float [M]: 1 where the head reads the container features
  gates: dict[str, jax.Array]  # VQAModel's gates, float [M] each: 0 switches a branch off
  resized: jax.Array  # bool [M]: the paper's resize instead of native fragments
  modes: list[str]  # the sampling modes any model uses

  @classmethod
  def of(cls, specs: tuple[ModelSpec, ...]) -> "PerModel":
    return cls(
        fold=jnp.asarray([spec.fold for spec in specs]),
        uses_container=jnp.asarray([spec.container for spec in specs], jnp.float32),
        gates={
            f"{branch}_gate": jnp.asarray([getattr(spec, branch) for spec in specs], jnp.float32)
            for branch in ("detail", "embedding", "statistics")
        },
        resized=jnp.asarray([spec.sampling == "resize_crop" for spec in specs]),
        modes=sorted({spec.sampling for spec in specs}),
    )


class StackedRun:
  """The device side: frames and labels on the accelerator, the stacked states, jitted programs."""

  def __init__(self, config, data: decoded_lib.DecodedSet, specs: list[ModelSpec], layout: Layout):
    self.config, self.data, self.specs, self.layout = config, data, specs, layout
    model_config = ml_collections.ConfigDict(config.model.to_dict())
    model_config.container_features = any(spec.container for spec in specs)
    if not any(spec.detail for spec in specs):
      model_config.detail_features = 0
    if not any(spec.statistics for spec in specs):
      model_config.statistics_region = 0
    self.model = vqa.build_vqa_model(model_config)
    log.info("placing %.2f GB of decoded frames on %s", data.frames.nbytes / 1e9, jax.devices()[0])
    self.frames = jnp.asarray(np.ascontiguousarray(data.frames))
    self.label = jnp.asarray(data.label)
    self.frame_label = jnp.asarray(data.frame_label)
    self.source = jnp.asarray(data.source)
    is_hevc = np.isin(np.asarray(data.codec_names)[data.codec], HEVC_CODECS)
    self.container = vqa.container_features(data.bits_per_pixel, data.scale, data.fps, is_hevc)
    self.per_model = PerModel.of(tuple(specs))

  @functools.cached_property
  def _init_program(self):
    """The stacked init as one jitted program (run eagerly, vmap compiled each of its hundreds of
    ops on its own: 0.2 s each on a 2-core CPU), built once per run so that pre-training's and
    fine-tuning's states share its compile."""
    frames = video.FrameOptions(num_frames=self.layout.num_frames, size=self.layout.size)
    container = jnp.zeros((1, vqa.CONTAINER_DIM)) if self.model.container_dim else None

    def init(rng):
      dummy = jnp.zeros((1, frames.num_frames, frames.size, frames.size, 3), jnp.uint8)
      return self.model.init(rng, dummy, None, container, train=False)["params"]

    return jax.jit(jax.vmap(init))

  def init_states(self, tx, seed: int, shapes_only: bool = False) -> steps.TrainState:
    """Freshly initialised stacked states; with `shapes_only`, their shapes and dtypes alone (for a
    restore that replaces every value), traced without compiling the init."""
    rngs = jax.random.split(jax.random.PRNGKey(seed), len(self.specs))
    create = jax.vmap(lambda p: steps.TrainState.create(p, tx))
    if shapes_only:
      return jax.eval_shape(lambda keys: create(self._init_program(keys)), rngs)
    params = steps.on_host(self._init_program, rngs)
    return jax.jit(create)(params)

  @property
  def arrays(self) -> dict[str, jax.Array]:
    """The device-resident data, passed to the jitted programs as arguments (captured as
    constants, 6 GB of frames make XLA's compile take minutes)."""
    return {
        "frames": self.frames,
        "label": self.label,
        "frame_label": self.frame_label,
        "container": self.container,
        "source": self.source,
    }

  def train_step(self, stage: str):
    config = self.config
    return _compiled_step(
        _StepProgram(
            model=self.model,
            specs=tuple(self.specs),
            layout=self.layout,
            stage=stage,
            loss=json.dumps(config.loss.to_dict(), sort_keys=True),
            ema_decay=config.optim.ema_decay,
            pretrain_margin=config.pretrain.margin if stage == PRETRAIN else 0.0,
            use_frame_labels=config.data.use_frame_labels,
        )
    )

  @functools.cached_property
  def _score(self):
    def score(params, draw, indices, arrays):
      clips = gather_clips(arrays["frames"], draw, self.layout, "fragments")[0]
      resized = (
          gather_clips(arrays["frames"], draw, self.layout, "resize_crop")[0]
          if "resize_crop" in self.per_model.modes
          else clips
      )

      def one(model_params, use_resize, use_container, gates):
        model_clips = jnp.where(use_resize, resized, clips)
        container = arrays["container"][indices] * use_container
        return self.model.apply(
            {"params": model_params}, model_clips, None, container, **gates
        ).score

      per_model = self.per_model
      return jax.vmap(one)(params, per_model.resized, per_model.uses_container, per_model.gates)

    return jax.jit(score)

  def predict(self, params, batch_size: int) -> np.ndarray:
    """Scores [M, N] of every model on every encode (evaluation sampling)."""
    num = len(self.data)
    stored = self.data.frames.shape[1]
    out = []
    for start in range(0, num, batch_size):
      indices = np.arange(start, min(num, start + batch_size))
      padded = np.concatenate([indices, np.full(batch_size - len(indices), indices[-1])])
      draw = evaluation_draw(padded, self.layout, stored)
      out.append(
          np.asarray(self._score(params, draw, jnp.asarray(padded), self.arrays))[:, : len(indices)]
      )
    return np.concatenate(out, axis=1)


@dataclasses.dataclass(frozen=True)
class _StepProgram:
  """What the stacked step reads besides its arguments. Equal runs (a resume in the same process,
  the tests) share one compilation instead of each compiling a closure of its own."""

  model: Any  # vqa.VQAModel, hashable
  specs: tuple[ModelSpec, ...]
  layout: Layout
  stage: str
  loss: str  # config.loss as sorted JSON
  ema_decay: float
  pretrain_margin: float
  use_frame_labels: bool


@functools.lru_cache(maxsize=4)
def _compiled_step(program: _StepProgram):
  """The jitted step of `program`: one AdamW step of every stacked model on its fold's batch."""
  specs, stage, layout = program.specs, program.stage, program.layout
  per_model = PerModel.of(specs)
  fold_of_model, uses_container, gates = per_model.fold, per_model.uses_container, per_model.gates
  resized, modes = per_model.resized, per_model.modes
  if stage == FINETUNE:
    weights = jnp.asarray([spec.loss_weights for spec in specs], jnp.float32)
  else:
    weights = jnp.tile(
        jnp.asarray([[term == "rank" for term in LOSS_TERMS]], jnp.float32), (len(specs), 1)
    )
  margins = jnp.asarray(
      [spec.margin if stage == FINETUNE else program.pretrain_margin for spec in specs],
      jnp.float32,
  )
  step_fn = functools.partial(
      _model_step,
      model=program.model,
      loss_config=ml_collections.ConfigDict(json.loads(program.loss)),
      ema_decay=program.ema_decay,
  )

  def model_clips(frames, draw) -> jax.Array:
    """[M, B, T, S, S, 3]: each model's fold batch in its variant's sampling mode."""
    by_mode = {mode: gather_clips(frames, draw, layout, mode)[fold_of_model] for mode in modes}
    if len(by_mode) == 1:
      return by_mode[modes[0]]
    return jnp.where(
        resized[:, None, None, None, None, None], by_mode["resize_crop"], by_mode["fragments"]
    )

  def step(states, draw, base_rng, arrays):
    clips = model_clips(arrays["frames"], draw)
    fold = fold_of_model
    video_index = draw["video"][fold]  # [M, B]
    if stage == PRETRAIN:
      label = draw["rank_label"][fold]
    elif program.use_frame_labels:
      picked = jnp.take_along_axis(arrays["frame_label"][draw["video"]], draw["picks"], axis=2)
      label = picked.mean(-1)[fold]
    else:
      label = arrays["label"][video_index]
    container = arrays["container"][video_index] * uses_container[:, None, None]
    rngs = jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(base_rng, i), states.step[0]))(
        jnp.arange(len(specs))
    )
    source = arrays["source"][video_index]
    return jax.vmap(step_fn)(
        states,
        clips,
        label,
        draw["group"][fold],
        source,
        container,
        gates,
        weights,
        margins,
        rngs,
    )

  return jax.jit(step, donate_argnums=0)

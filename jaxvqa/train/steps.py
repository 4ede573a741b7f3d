"""The train state and the two pure steps the trainer jits: one optimisation step, one scoring pass.

Randomness is a function of (seed, step) alone, so a resumed run draws exactly the numbers an
uninterrupted one would have drawn.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxvqa.train import losses
from jaxvqa.data import video
from jaxvqa.models import swinv2, vqa

# Dropout and stochastic depth both draw from Flax's "dropout" stream, named once by the backbone.
DROPOUT_RNG = swinv2.DROP_PATH_RNG


class TrainState(struct.PyTreeNode):
  step: jax.Array
  params: Any
  ema_params: Any
  opt_state: Any  # optax.ApplyIfFiniteState at the top (optim.build_optimizer)
  tx: optax.GradientTransformation = struct.field(pytree_node=False)

  @property
  def nonfinite_streak(self) -> jax.Array:
    """Consecutive skipped (non-finite) steps, for the trainer's stop rule: apply_if_finite's own
    count, so skipping and counting are one mechanism."""
    return self.opt_state.notfinite_count

  @classmethod
  def create(cls, params, tx: optax.GradientTransformation) -> "TrainState":
    return cls(
        # A copy, not an alias: the jitted step donates the state, and one buffer cannot be donated twice.
        step=jnp.zeros((), jnp.int32),
        params=params,
        ema_params=jax.tree.map(jnp.copy, params),
        opt_state=tx.init(params),
        tx=tx,
    )


def on_host(function: Callable[..., Any], *args) -> Any:
  """`function(*args)` computed on the host CPU (where the backend exists), as numpy arrays.

  For parameter initialisation: its program is thousands of small random-number ops, which XLA's
  CPU compiler builds in seconds and its GPU compiler in about two minutes (SwinV2-T on an H100).
  Threefry draws the same numbers on every backend, so the parameters do not depend on where
  they were made; numpy leaves let the caller place them wherever its mesh wants.
  """
  try:
    host = jax.devices("cpu")[0]
  except RuntimeError:  # JAX_PLATFORMS excludes the CPU: compute where we are
    return jax.device_get(function(*args))
  with jax.default_device(host):
    return jax.device_get(function(*args))


@functools.lru_cache(maxsize=8)
def _jit_init(model: nn.Module, input_shape: tuple[int, ...]):
  def init(rng: jax.Array) -> Any:
    dummy = jnp.zeros((1, *input_shape), jnp.uint8)
    return model.init(rng, dummy, train=False)["params"]

  return jax.jit(init)


def _input_shape(model: nn.Module, frames: video.FrameOptions) -> tuple[int, ...]:
  """One clip [T, S, S, 3] for a video model, one image [S, S, 3] otherwise."""
  input_shape = (frames.size, frames.size, 3)
  if isinstance(model, vqa.VQAModel):
    input_shape = (frames.num_frames, *input_shape)
  return input_shape


def init_params(model: nn.Module, frames: video.FrameOptions, seed: int) -> Any:
  """Parameters of `model` for clips (or images) of `frames`, as numpy arrays made on the host
  (`on_host`); one dummy input, weights do not depend on it."""
  init = _jit_init(model, _input_shape(model, frames))
  return on_host(lambda: init(jax.random.PRNGKey(seed)))


def param_shapes(model: nn.Module, frames: video.FrameOptions) -> Any:
  """The tree `init_params` would make, as jax.ShapeDtypeStruct leaves, without drawing it."""
  return jax.eval_shape(_jit_init(model, _input_shape(model, frames)), jax.random.PRNGKey(0))


def _global_norm(tree) -> jax.Array:
  return optax.global_norm(jax.tree.map(lambda x: x.astype(jnp.float32), tree))


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    *,
    model: nn.Module,
    loss_weights: losses.LossWeights,
    ema_decay: float,
    base_rng: jax.Array,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One AdamW step on the global batch.

  batch: frames [B, T, H, W, 3] uint8, label [B] float, group [B] int, mask [B] bool
  (False = padding entry), optional frame_mask [B, T]. Non-finite gradients skip the update
  (optax.apply_if_finite) and lengthen `nonfinite_streak`.
  """
  rngs = {DROPOUT_RNG: jax.random.fold_in(base_rng, state.step)}

  def loss_fn(params):
    score, projection = forward(model, params, batch, train=True, rngs=rngs)
    total, parts = losses.total_loss(
        score, batch["label"], projection, batch["group"], batch["mask"], loss_weights
    )
    return total, parts

  (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  new_state, finite = apply_gradients(state, loss, grads, ema_decay)
  metrics = {
      "loss": loss,
      **{f"loss/{name}": value for name, value in parts.items()},
      "grad_norm": _global_norm(grads),
      "param_norm": _global_norm(new_state.params),
      "finite": finite.astype(jnp.float32),
  }
  return new_state, metrics


def apply_gradients(
    state: TrainState, loss: jax.Array, grads, ema_decay: float
) -> tuple[TrainState, jax.Array]:
  """(the state after one optimizer step, whether loss and gradients were finite).

  A non-finite step leaves parameters and moments unchanged (optax.apply_if_finite in the
  optimizer), keeps the EMA as it was and lengthens `nonfinite_streak`.
  """
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  finite = jnp.isfinite(loss) & jnp.isfinite(_global_norm(grads))
  ema_params = jax.tree.map(
      lambda ema, new: jnp.where(finite, ema_decay * ema + (1.0 - ema_decay) * new, ema),
      state.ema_params,
      params,
  )
  new_state = state.replace(
      step=state.step + 1, params=params, ema_params=ema_params, opt_state=opt_state
  )
  return new_state, finite


def forward(
    model: nn.Module, params, batch: dict[str, jax.Array], *, train: bool, rngs=None
) -> tuple[jax.Array, jax.Array | None]:
  """(score [B], projection [B, P] or None) of a VQA or IQA model on a loader batch.

  Image sets load as one-frame clips [B, 1, H, W, 3]; the IQA model scores the frame and has no
  projection (config validation keeps the group loss off for it).
  """
  if isinstance(model, vqa.IQAModel):
    return (
        model.apply({"params": params}, batch["frames"][:, 0], train=train, rngs=rngs).score,
        None,
    )
  output = model.apply(
      {"params": params}, batch["frames"], batch.get("frame_mask"), train=train, rngs=rngs
  )
  return output.score, output.projection


def score_step(params, batch: dict[str, jax.Array], *, model: nn.Module) -> jax.Array:
  """Deterministic scores [B] for a batch (no dropout, no drop path)."""
  return forward(model, params, batch, train=False)[0]


@functools.lru_cache(maxsize=8)
def jit_train_step(
    model, loss_weights: losses.LossWeights, ema_decay: float, seed: int
) -> Callable:
  """The train step, jitted with the state donated (its buffers are reused for the new state).

  Cached on its (hashable) arguments, so runs of one model in a process share compilations.
  """
  base_rng = jax.random.PRNGKey(seed)
  return jax.jit(
      lambda state, batch: train_step(
          state,
          batch,
          model=model,
          loss_weights=loss_weights,
          ema_decay=ema_decay,
          base_rng=base_rng,
      ),
      donate_argnums=0,
  )


@functools.lru_cache(maxsize=8)
def jit_score_step(model) -> Callable:
  return jax.jit(lambda params, batch: score_step(params, batch, model=model))

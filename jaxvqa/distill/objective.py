"""The distillation loss: each small pure function one term, `distillation_loss` their weighted sum.

Feature term (Wei et al. 2022, feature distillation): the teacher's maps are whitened by a LayerNorm
over channels with no parameters, so every level and channel weighs alike whatever its raw scale,
and the student's projection predicts them under a smooth-L1 loss (β = 2, as there).
Class term: KL divergence from the teacher's ImageNet class distribution to the student's, at
temperature τ (Hinton et al. 2015), scaled by τ² so its gradients keep their size as τ changes.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import optax

SMOOTH_L1_BETA = 2.0


def whiten(features: jax.Array, eps: float = 1e-6) -> jax.Array:
  """Per position, zero mean and unit variance over channels (LayerNorm with no parameters)."""
  features = features.astype(jnp.float32)
  mean = features.mean(axis=-1, keepdims=True)
  variance = features.var(axis=-1, keepdims=True)
  return (features - mean) * jax.lax.rsqrt(variance + eps)


def smooth_l1(prediction: jax.Array, target: jax.Array, beta: float = SMOOTH_L1_BETA) -> jax.Array:
  """Mean smooth-L1 (PyTorch's SmoothL1Loss): x²/(2β) below β, |x| − β/2 above."""
  return jnp.mean(optax.huber_loss(prediction, target, delta=beta)) / beta


def feature_loss(predicted: Sequence[jax.Array], teacher: Sequence[jax.Array]) -> jax.Array:
  """Mean over levels of smooth-L1(student projection, whitened teacher map); shapes must agree."""
  terms = []
  for level, (p, t) in enumerate(zip(predicted, teacher, strict=True)):
    if p.shape != t.shape:
      raise ValueError(
          f"distillation level {level}: the student predicts {p.shape} but the teacher map is "
          f"{t.shape}; crops must be a multiple of 32 px"
      )
    terms.append(smooth_l1(p, jax.lax.stop_gradient(whiten(t))))
  return jnp.mean(jnp.stack(terms))


def class_loss(
    student_logits: jax.Array, teacher_logits: jax.Array, temperature: float
) -> jax.Array:
  """τ² · mean over the batch of KL(softmax(teacher/τ) ‖ softmax(student/τ))."""
  teacher = jax.nn.log_softmax(jax.lax.stop_gradient(teacher_logits) / temperature)
  student = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature)
  kl = jnp.sum(jnp.exp(teacher) * (teacher - student), axis=-1)
  return temperature**2 * jnp.mean(kl)


def distillation_loss(
    student_maps: Sequence[jax.Array],
    student_logits: jax.Array,
    teacher_maps: Sequence[jax.Array],
    teacher_logits: jax.Array,
    *,
    feature_weight: float,
    class_weight: float,
    temperature: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """(weighted total, the terms by name)."""
  terms = {
      "feature": feature_loss(student_maps, teacher_maps),
      "class": class_loss(student_logits, teacher_logits, temperature),
  }
  total = feature_weight * terms["feature"] + class_weight * terms["class"]
  return total, terms

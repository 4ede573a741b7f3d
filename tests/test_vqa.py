"""The whole model (jaxvqa/models/vqa.py): jit, padding, gradients, frozen backbone, IQA hand-over, bf16.

One tiny model (tests/conftest.py `tiny_demo_settings`) at 64×64 px, so the four stage maps are
16², 8², 4², 2²: every stage attends over more than one token, and every attention parameter can
receive a gradient (a 1×1 map makes the softmax constant and cuts its q/k path).

Compilation dominates the run time on a 2-core CPU (a forward takes seconds to compile, the
backward several times that), so:
- each program is compiled once per module (module-scope fixtures), with XLA's backend
  optimisation off: these tests check values, which do not depend on how well the code is tuned;
- parameters are drawn in numpy with the layout `model.init` gives (`jax.eval_shape`), instead
  of compiling the initialiser. They are trained-like on purpose: a fresh SwinV2 block is the
  identity (its norm scales start at 0) and fresh biases are 0, which would hide paths from the
  gradient and bf16 tests;
- eager (un-jitted) Flax is not run: it compiles each op on its own and takes longer than the
  whole file. The jitted outputs are checked against the heads applied on their own instead.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from configs import demo as demo_config
from conftest import tiny_demo_settings
from jaxvqa.train import losses
from jaxvqa.models import vqa
from jaxvqa.train.steps import DROPOUT_RNG

FRAME_SIZE = 64
NUM_FRAMES = 3
PADDED_FRAMES = 5
FAST_COMPILE = {"xla_backend_optimization_level": 0}

# Grad test batch: 2 bitrate groups × 2 videos, so every term of the default objective is active.
LABELS = np.array([80.0, 60.0, 45.0, 20.0], np.float32)
GROUPS = np.array([0, 0, 1, 1], np.int32)

# Leaves that get no gradient from the default objective, by construction (see
# test_every_parameter_receives_a_finite_gradient).
NO_GRADIENT_BY_DESIGN = (
    ("backbone", "norm"),  # feeds only SwinV2Output.pooled, which the VQA model does not read
    ("key", "bias"),  # softmax is invariant to q·b_k, the same for every key of a query
    ("head", "out", "bias"),  # PLCC and rank losses are invariant to shifting all scores
)


def _jit(fn, **kwargs):
  return jax.jit(fn, compiler_options=FAST_COMPILE, **kwargs)


def _model_config(**overrides):
  config = tiny_demo_settings(demo_config.get_config("scratch")).model
  config.temporal.max_frames = 8  # room for the padded clip
  config.update(overrides)
  return config


def _flat(tree) -> dict[tuple[str, ...], jax.Array]:
  return traverse_util.flatten_dict(tree)


def _no_gradient_by_design(path: tuple[str, ...]) -> bool:
  return any(
      path[i : i + len(part)] == part for part in NO_GRADIENT_BY_DESIGN for i in range(len(path))
  )


def _random_params(model, seed: int, *args):
  """Trained-like parameters with the layout of `model.init(key, *args)`, drawn in numpy.

  LayerNorm scales 1 + 0.1·N(0, 1), kernels N(0, 1/fan_in), the attention logit scales at their
  initial ln 10, everything else (biases, position and stage embeddings) 0.02·N(0, 1).
  """
  rng = np.random.default_rng(seed)
  shapes = _flat(jax.eval_shape(model.init, jax.random.PRNGKey(0), *args)["params"])

  def draw(path, leaf):
    if path[-1] == "logit_scale":
      return jnp.full(leaf.shape, np.log(10.0), leaf.dtype)
    normal = rng.standard_normal(leaf.shape)
    if path[-1] == "scale":
      value = 1.0 + 0.1 * normal
    elif path[-1] == "kernel":
      value = normal / np.sqrt(np.prod(leaf.shape[:-1]))
    else:
      value = 0.02 * normal
    return jnp.asarray(value, leaf.dtype)

  return traverse_util.unflatten_dict({path: draw(path, leaf) for path, leaf in shapes.items()})


def _videos(count: int, seed: int) -> np.ndarray:
  """[count, NUM_FRAMES, S, S, 3] uint8, alternately smooth moving ramps and noise."""
  rng = np.random.default_rng(seed)
  ramp = np.linspace(0, 255, FRAME_SIZE, dtype=np.float32)
  videos = []
  for index in range(count):
    if index % 2 == 0:
      frames = [
          np.roll(ramp[None, :, None] * np.ones((FRAME_SIZE, 1, 3)), 5 * t + index, axis=1)
          for t in range(NUM_FRAMES)
      ]
      videos.append(np.stack(frames).astype(np.uint8))
    else:
      videos.append(rng.integers(0, 256, (NUM_FRAMES, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8))
  return np.stack(videos)


def _forward(model):
  """Jitted eval forward: (VQAOutput, per-frame features [B·T, F] from spatial_fusion)."""

  def forward(params, frames, frame_mask):
    output, state = model.apply(
        {"params": params},
        frames,
        frame_mask,
        mutable=["intermediates"],
        capture_intermediates=lambda module, method: module.name == "spatial_fusion",
    )
    return output, state["intermediates"]["spatial_fusion"]["__call__"][0]

  return _jit(forward)


@pytest.fixture(scope="module")
def model_config():
  return _model_config()


@pytest.fixture(scope="module")
def model(model_config):
  return vqa.build_vqa_model(model_config)


@pytest.fixture(scope="module")
def videos():
  return _videos(2, seed=0)


@pytest.fixture(scope="module")
def params(model, videos):
  return _random_params(model, 0, videos, np.ones(videos.shape[:2], bool))


@pytest.fixture(scope="module")
def forward(model):
  return _forward(model)


@pytest.fixture(scope="module")
def reference(forward, params, videos):
  """Eval outputs of the two unpadded videos: (VQAOutput, features)."""
  return forward(params, videos, np.ones(videos.shape[:2], bool))


def test_jitted_forward_is_finite_normalised_and_consistent(model_config, params, reference):
  output, _ = reference
  assert output.score.shape == (2,)
  assert output.embedding.shape == (2, model_config.temporal.width)
  assert output.projection.shape == (2, model_config.projection_dim)
  for name, value in output._asdict().items():
    assert np.all(np.isfinite(value)), f"{name} is not finite"
  np.testing.assert_allclose(np.linalg.norm(output.projection, axis=-1), 1.0, atol=1e-5)
  # The score is the quality head of the embedding, the projection the projection head of it.
  head = vqa.QualityHead(model_config.head_hidden)
  np.testing.assert_allclose(
      head.apply({"params": params["head"]}, output.embedding), output.score, rtol=1e-5, atol=1e-6
  )
  projection = vqa.ProjectionHead(model_config.projection_dim)
  np.testing.assert_allclose(
      projection.apply({"params": params["projection"]}, output.embedding),
      output.projection,
      rtol=1e-5,
      atol=1e-6,
  )
  # A smooth ramp and noise are different videos, and score differently.
  assert abs(float(output.score[0] - output.score[1])) > 1e-3
  assert np.linalg.norm(output.embedding[0] - output.embedding[1]) > 1e-2


def test_padded_frames_do_not_change_the_score(forward, params, videos, reference):
  unpadded, _ = reference
  rng = np.random.default_rng(1)
  shape = (PADDED_FRAMES - NUM_FRAMES, FRAME_SIZE, FRAME_SIZE, 3)
  garbage = [rng.integers(0, 256, shape, dtype=np.uint8), np.full(shape, 255, np.uint8)]
  # Both rows hold video 0, padded with different garbage.
  padded = np.stack([np.concatenate([videos[0], pad]) for pad in garbage])
  mask = np.zeros((2, PADDED_FRAMES), bool)
  mask[:, :NUM_FRAMES] = True

  output, _ = forward(params, padded, mask)
  for row in range(2):
    np.testing.assert_allclose(output.score[row], unpadded.score[0], atol=1e-5)
    np.testing.assert_allclose(output.embedding[row], unpadded.embedding[0], atol=1e-5)
  np.testing.assert_allclose(output.score[0], output.score[1], atol=1e-6)

  # Not vacuous: the same frames counted as real change the score.
  unmasked, _ = forward(params, padded, np.ones_like(mask))
  assert np.all(np.abs(unmasked.score - unpadded.score[0]) > 1e-4)


# ------------------------------------------------------------------------------------ gradients


def _loss_and_grads(model):
  """Jitted (loss, grads) of the default objective (losses.total_loss) with dropout and drop path."""
  weights = losses.LossWeights()

  def loss_fn(params, frames, key):
    output = model.apply({"params": params}, frames, train=True, rngs={DROPOUT_RNG: key})
    total, _ = losses.total_loss(
        output.score, LABELS, output.projection, GROUPS, np.ones(len(LABELS), bool), weights
    )
    return total

  return _jit(jax.value_and_grad(loss_fn))


@pytest.fixture(scope="module")
def grad_videos():
  return _videos(len(LABELS), seed=2)


@pytest.fixture(scope="module")
def grads(model, params, grad_videos):
  """{key: (loss, grads)} for two dropout keys, one compilation."""
  loss_and_grads = _loss_and_grads(model)
  return {key: loss_and_grads(params, grad_videos, jax.random.PRNGKey(key)) for key in (1, 2)}


def test_every_parameter_receives_a_finite_gradient(grads):
  loss, grad = grads[1]
  assert np.isfinite(loss)
  flat = _flat(grad)
  for path, value in flat.items():
    assert np.all(np.isfinite(value)), f"non-finite gradient for {'/'.join(path)}"
  largest = {path: float(np.max(np.abs(value))) for path, value in flat.items()}
  expected_zero = {path for path in flat if _no_gradient_by_design(path)}
  assert len(expected_zero) == 2 + 4 + 1, sorted(expected_zero)  # norm ×2, 4 attention layers, bias
  # Zero by construction, up to float32 round-off (measured: ≤ 7e-8, against ≥ 7e-3 for the rest).
  for path in expected_zero:
    assert largest[path] < 1e-6, f"{'/'.join(path)}: {largest[path]}"
  starved = sorted("/".join(path) for path in set(flat) - expected_zero if largest[path] < 1e-5)
  assert not starved, f"parameters without gradient: {starved}"


def test_training_mode_draws_from_the_dropout_stream(grads):
  # Dropout and drop path are live under train=True: another key gives another loss.
  assert abs(float(grads[1][0] - grads[2][0])) > 1e-6


def test_frozen_backbone_gets_zero_gradient_and_the_rest_is_unchanged(
    model_config, params, grad_videos, grads
):
  frozen = vqa.build_vqa_model(_model_config(freeze_backbone=True))
  assert frozen.freeze_backbone
  loss, grad = _loss_and_grads(frozen)(params, grad_videos, jax.random.PRNGKey(1))
  trainable_loss, trainable_grad = grads[1]
  # Freezing cuts gradients, not the forward pass.
  np.testing.assert_allclose(loss, trainable_loss, rtol=1e-6)
  for path, value in _flat(grad["backbone"]).items():
    assert np.all(value == 0), f"frozen backbone leaf {'/'.join(path)} has a gradient"
  assert any(np.any(value != 0) for value in jax.tree.leaves(trainable_grad["backbone"]))
  for name in ("spatial_fusion", "temporal_fusion", "head", "projection"):
    # The same gradients as without freezing, up to float32 reassociation (the zero-by-design
    # leaves hold only round-off, which is not comparable).
    for path, value in _flat(grad[name]).items():
      if _no_gradient_by_design((name, *path)):
        continue
      assert np.any(value != 0), "/".join((name, *path))
      expected = _flat(trainable_grad[name])[path]
      np.testing.assert_allclose(
          value,
          expected,
          rtol=1e-4,
          atol=1e-4 * np.max(np.abs(expected)),
          err_msg="/".join((name, *path)),
      )


# ------------------------------------------------------------------------------------ IQA model


def test_iqa_model_shares_the_spatial_layout_and_hands_it_over(
    model_config, params, videos, forward, reference
):
  iqa = vqa.build_iqa_model(model_config)
  images = videos.reshape(
      -1, FRAME_SIZE, FRAME_SIZE, 3
  )  # [B·T, S, S, 3], the VQA model's frame order
  iqa_shapes = jax.eval_shape(iqa.init, jax.random.PRNGKey(0), images)["params"]
  assert set(iqa_shapes) == {"backbone", "spatial_fusion", "image_head"}
  for name in vqa.SPATIAL_MODULES:
    assert jax.tree.map(lambda x: (x.shape, x.dtype), iqa_shapes[name]) == jax.tree.map(
        lambda x: (x.shape, x.dtype), params[name]
    ), name

  # An "IQA-pretrained" model: the same spatial layout, other values.
  iqa_params = _random_params(iqa, 7, images)
  iqa_output = _jit(lambda p, x: iqa.apply({"params": p}, x))(iqa_params, images)
  assert iqa_output.score.shape == (len(images),) and np.all(np.isfinite(iqa_output.score))

  transferred = vqa.transfer_spatial_params(iqa_params, params)
  for name in vqa.SPATIAL_MODULES:
    assert all(
        a is b
        for a, b in zip(jax.tree.leaves(transferred[name]), jax.tree.leaves(iqa_params[name]))
    )
  for name in ("temporal_fusion", "head", "projection"):
    assert transferred[name] is params[name]

  # The video model now sees each frame exactly as the image model does.
  output, features = forward(transferred, videos, np.ones(videos.shape[:2], bool))
  np.testing.assert_allclose(features, iqa_output.feature, rtol=1e-5, atol=1e-5)
  assert not np.allclose(features, reference[1], atol=1e-3)
  assert not np.allclose(output.score, reference[0].score, atol=1e-4)


@pytest.mark.parametrize("module_name", vqa.SPATIAL_MODULES)
def test_transfer_rejects_a_shape_mismatch_naming_the_module(params, module_name):
  flat = _flat(params[module_name])
  path = next(iter(flat))
  flat[path] = jnp.zeros(flat[path].shape + (2,))
  target = {**params, module_name: traverse_util.unflatten_dict(flat)}
  shape = tuple(flat[path].shape)
  with pytest.raises(ValueError, match=f"'{module_name}'.*{re.escape(str(shape))} in the model"):
    vqa.transfer_spatial_params(params, target)
  with pytest.raises(ValueError, match="none of"):
    vqa.transfer_spatial_params({"head": params["head"]}, params)


# ------------------------------------------------------------------------------------ dtypes


def test_bfloat16_compute_stays_close_to_float32(params, videos, reference):
  bf16 = vqa.build_vqa_model(_model_config(dtype="bfloat16"))
  mask = np.ones(videos.shape[:2], bool)
  # Parameters stay float32 whatever the compute dtype; the layout is the float32 model's.
  shapes = jax.eval_shape(bf16.init, jax.random.PRNGKey(0), videos, mask)["params"]
  assert {leaf.dtype for leaf in jax.tree.leaves(shapes)} == {jnp.dtype(jnp.float32)}
  assert jax.tree.structure(shapes) == jax.tree.structure(params)

  output, features = _forward(bf16)(params, videos, mask)
  expected, _ = reference
  assert features.dtype == jnp.bfloat16  # the bf16 path really ran
  for name in vqa.VQAOutput._fields:
    assert getattr(output, name).dtype == jnp.float32, name
  # bf16 rounds every activation to 2⁻⁸ relative (0.4%). The LayerNorms over 8-16 channels amplify
  # that where a vector's mean dominates its spread (a post-norm after window-averaged attention
  # outputs): measured 1-4% at the embedding over 3 parameter seeds × 4 videos (≤ 3% here), cosine
  # of the projections ≥ 0.998. The bounds leave 2× room and still catch a broken bf16 path (a
  # softmax or mask overflowing in bf16 gives errors of order 1).
  embedding_error = np.linalg.norm(output.embedding - expected.embedding, axis=-1) / np.linalg.norm(
      expected.embedding, axis=-1
  )
  assert np.all(embedding_error < 8e-2), embedding_error
  assert np.all(embedding_error > 0), "bf16 and fp32 agree bit for bit: bf16 did not run"
  assert np.all(np.sum(output.projection * expected.projection, axis=-1) > 0.99)
  # The score is a sum of head terms w₂·gelu(embedding·W₁ + b₁) that partly cancel, and bf16 error
  # is relative to the terms, not to their sum: bound it by 10% of Σ|terms| (measured ≤ 7%).
  head = params["head"]
  hidden = jax.nn.gelu(expected.embedding @ head["hidden"]["kernel"] + head["hidden"]["bias"])
  head_terms = jnp.sum(jnp.abs(hidden * head["out"]["kernel"][:, 0]), axis=-1) + jnp.abs(
      head["out"]["bias"][0]
  )
  score_error = np.abs(output.score - expected.score) / head_terms
  assert np.all(score_error < 1e-1), score_error


@pytest.mark.parametrize("build", [vqa.build_vqa_model, vqa.build_iqa_model])
def test_unsupported_dtype_is_rejected_naming_the_field(build):
  with pytest.raises(ValueError, match=r"config\.model\.dtype.*'float16'"):
    build(_model_config(dtype="float16"))


def test_detail_statistics_are_the_log_mean_absolute_response_of_its_filters():
  rng = np.random.default_rng(0)
  pixels = rng.normal(size=(2, 8, 12, 3)).astype(np.float32)
  module = vqa.DetailStatistics(features=5, patch_size=4)
  params = module.init(jax.random.PRNGKey(0), pixels)["params"]
  kernel = np.asarray(params["filters"]["kernel"], np.float64)  # [4, 4, 3, 5]
  bias = np.asarray(params["filters"]["bias"], np.float64)
  # Non-overlapping 4 × 4 patches, each a dot product with every filter.
  patches = pixels.reshape(2, 2, 4, 3, 4, 3).transpose(0, 1, 3, 2, 4, 5).reshape(2, 6, 48)
  response = patches.astype(np.float64) @ kernel.reshape(48, 5) + bias
  expected = np.log(np.abs(response).mean(axis=1) + 1e-3)
  np.testing.assert_allclose(module.apply({"params": params}, pixels), expected, rtol=1e-5)
  # A blurred copy (each patch replaced by its mean colour) responds less to most filters.
  blurred = np.broadcast_to(
      pixels.reshape(2, 2, 4, 3, 4, 3).mean(axis=(2, 4), keepdims=True), (2, 2, 4, 3, 4, 3)
  ).reshape(2, 8, 12, 3)
  assert np.mean(module.apply({"params": params}, blurred) < expected) >= 0.8


def test_deeper_detail_statistics_add_the_log_energy_of_each_3x3_layer():
  rng = np.random.default_rng(1)
  pixels = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
  deep = vqa.DetailStatistics(features=3, patch_size=4, depth=2)
  params = deep.init(jax.random.PRNGKey(0), pixels)["params"]
  shallow = vqa.DetailStatistics(features=3, patch_size=4)
  statistics = np.asarray(deep.apply({"params": params}, pixels))
  # The first block is the one-layer branch with the same filters.
  np.testing.assert_allclose(
      statistics[:, :3],
      shallow.apply({"params": {"filters": params["filters"]}}, pixels),
      rtol=1e-6,
  )
  # The second: a 3×3 "SAME" convolution of the GELU of the filter maps, written out in numpy.
  patches = pixels.reshape(2, 4, 4, 4, 4, 3).transpose(0, 1, 3, 2, 4, 5).reshape(2, 4, 4, 48)
  maps = patches.astype(np.float64) @ np.asarray(params["filters"]["kernel"], np.float64).reshape(
      48, 3
  ) + np.asarray(params["filters"]["bias"], np.float64)
  activated = np.asarray(jax.nn.gelu(maps), np.float64)
  padded = np.pad(activated, ((0, 0), (1, 1), (1, 1), (0, 0)))
  kernel = np.asarray(params["conv_1"]["kernel"], np.float64)  # [3, 3, 3, 3]
  response = sum(
      padded[:, dy : dy + 4, dx : dx + 4] @ kernel[dy, dx] for dy in range(3) for dx in range(3)
  ) + np.asarray(params["conv_1"]["bias"])
  expected = np.log(np.abs(response).mean(axis=(1, 2)) + 1e-3)
  np.testing.assert_allclose(statistics[:, 3:], expected, rtol=1e-4, atol=1e-5)


def test_a_detail_depth_below_one_is_named(model_config):
  model_config = model_config.copy_and_resolve_references()
  model_config.detail_features, model_config.detail_depth = 4, 0
  with pytest.raises(ValueError, match=r"config.model.detail_depth must be >= 1"):
    vqa.build_vqa_model(model_config)


def test_embedding_gate_leaves_the_score_to_the_detail_branch(model_config, videos):
  model_config = model_config.copy_and_resolve_references()
  model_config.detail_features = 4
  model = vqa.build_vqa_model(model_config)
  params = _random_params(model, 2, videos)
  model_config.embedding_in_head = False
  detail_only = vqa.build_vqa_model(model_config)
  # Another backbone, the same detail branch and head.
  perturbed = dict(params)
  perturbed["backbone"] = jax.tree.map(lambda leaf: leaf * 1.5 + 0.1, params["backbone"])

  @jax.jit
  def scores(params, perturbed):
    return (
        model.apply({"params": params}, videos, embedding_gate=0.0).score,
        model.apply({"params": perturbed}, videos, embedding_gate=0.0).score,
        detail_only.apply({"params": perturbed}, videos).score,
        model.apply({"params": perturbed}, videos).score,
    )

  gated, gated_perturbed, built_off, on = scores(params, perturbed)
  # The built-in switch does not even have the embedding path: its scorer runs no backbone.
  own = jax.eval_shape(lambda: detail_only.init(jax.random.PRNGKey(0), videos)["params"])
  assert sorted(own) == ["detail", "head"]
  output = detail_only.apply({"params": {name: perturbed[name] for name in own}}, videos)
  assert output.embedding is None and output.projection is None
  np.testing.assert_allclose(output.score, gated, rtol=1e-6, atol=1e-6)
  # Gated off, the backbone's weights no longer reach the score; the built-in switch is the gate.
  np.testing.assert_allclose(gated_perturbed, gated, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(built_off, gated, rtol=1e-6, atol=1e-6)
  assert float(jnp.abs(on - gated).max()) > 1e-4


def test_detail_branch_gated_off_is_the_model_without_it(model_config, videos):
  model_config = model_config.copy_and_resolve_references()
  plain = vqa.build_vqa_model(model_config)
  model_config.detail_features = 4
  detailed = vqa.build_vqa_model(model_config)
  params = _random_params(detailed, 1, videos)
  plain_params = dict(params)
  plain_params.pop("detail")
  plain_params["head"] = {k: v for k, v in params["head"].items() if k != "detail"}
  mask = jnp.ones(videos.shape[:2], bool).at[:, -1].set(False)
  garbage = videos.copy()
  garbage[:, -1] = 255

  @jax.jit
  def scores(params, plain_params, videos, garbage):
    return (
        plain.apply({"params": plain_params}, videos).score,
        detailed.apply({"params": params}, videos, detail_gate=0.0).score,
        detailed.apply({"params": params}, videos).score,
        detailed.apply({"params": params}, garbage, mask).score,
        detailed.apply({"params": params}, videos, mask).score,
    )

  expected, gated, on, masked_garbage, masked = scores(params, plain_params, videos, garbage)
  np.testing.assert_allclose(gated, expected, rtol=1e-6, atol=1e-6)
  # Switched on, the branch moves the scores, and only through the masked-in frames.
  assert float(jnp.abs(on - expected).max()) > 1e-4
  np.testing.assert_allclose(masked_garbage, masked, rtol=1e-5, atol=1e-5)


def test_scene_statistics_enter_the_head_gated_and_masked_like_the_detail_branch(
    model_config, videos
):
  """A statistics-only scorer (no backbone, no detail filters): gated off it is the head on zeros;
  on, its score is the head applied to the masked frame mean of `scene_statistics`."""
  from jaxvqa.models import scene_statistics

  model_config = model_config.copy_and_resolve_references()
  model_config.update(statistics_region=FRAME_SIZE, embedding_in_head=False)
  model = vqa.build_vqa_model(model_config)
  params = _random_params(model, 3, videos)
  assert sorted(params) == ["head"] and "statistics" in params["head"]
  mask = jnp.ones(videos.shape[:2], bool).at[:, -1].set(False)
  head = vqa.QualityHead(model_config.head_hidden)
  width = model_config.temporal.width
  per_frame = scene_statistics.scene_statistics(
      videos.reshape(-1, *videos.shape[2:]), FRAME_SIZE
  ).reshape(*videos.shape[:2], -1)
  masked_mean = per_frame[:, :-1].mean(axis=1)
  zeros = jnp.zeros((len(videos), width))
  head_params = {"params": params["head"]}
  np.testing.assert_allclose(
      model.apply({"params": params}, videos, mask).score,
      head.apply(head_params, zeros, None, None, masked_mean),
      rtol=1e-5,
      atol=1e-5,
  )
  without = {"params": {k: v for k, v in params["head"].items() if k != "statistics"}}
  np.testing.assert_allclose(
      model.apply({"params": params}, videos, statistics_gate=0.0).score,
      head.apply(without, zeros),
      rtol=1e-6,
      atol=1e-6,
  )
  # The two test videos (a ramp, noise) differ in their statistics, and so in score.
  assert float(jnp.abs(per_frame[0] - per_frame[1]).max()) > 0.1

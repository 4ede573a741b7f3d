"""GPU speed of jaxvqa against PyTorch/timm, measured in the same run (issue 8).

    python benchmarks/throughput.py [--attention xla,pallas] [--batch 64] [--iters 20]
                                    [--repeats 5] [--json OUT]
    JAX_PLATFORMS=cpu python benchmarks/throughput.py --smoke --reference hf --skip-compile
                                   # CPU check of every code path: tiny sizes; about 7
                                   # CPU-minutes with both attention paths (pallas interpreted)

SwinV2-T (`swinv2_tiny_window8_256`) at 256², bf16 compute with fp32 parameters, --batch frames,
stochastic depth 0.1 (the default config's rate) on both sides:
  jax backbone infer     jaxvqa `SwinV2`, jitted forward → pooled features [B, 768]
  jax backbone train     forward, loss = mean(pooled²), backward, optax AdamW; jitted, state
                         donated
  <ref> eager infer      the same model in PyTorch (timm.create_model, pretrained=False), input
  <ref> eager train      channels-last NCHW, under torch.autocast(bfloat16); inference under
                         torch.inference_mode; train = forward, same loss, backward,
                         torch.optim.AdamW(fused=True) step
  <ref> compiled ...     the same with torch.compile(model); the fused AdamW step stays eager
  jax vqa train          the repo's real train step (`steps.jit_train_step`, its optimizer, losses
                         and EMA) on configs/default.py's model (window 16), 8 videos × 8 frames at
                         256² (the paper's batch), synthetic uint8 batch already on the device
Before them, a bf16 matmul ceiling: jnp.dot of 8192² matrices (torch.matmul beside it, as a check).

The jax rows are repeated for each window-attention path of --attention (`SwinV2.attention_impl`,
default "xla,pallas"; "auto", the models' default, is "pallas" on a CUDA GPU and "xla" elsewhere),
in the same process, and named by it: "jax backbone infer [pallas]".
"pallas" is the fused kernel of `window_attention_pallas`, compiled by Triton for a CUDA GPU.
Elsewhere its rows are skipped with one line saying why, except under --smoke, where the kernel
module runs the same kernels in Pallas' interpreter (slow; it checks the code path, not speed).

Each row: warm-up iterations (compilation included) that are not timed, then --repeats timings of
--iters iterations, each ending in a device synchronisation (block_until_ready on every output /
torch.cuda.synchronize); frames/s is from the median repeat, spread = (max − min) / median.
GFLOP/frame is the backbone's matmul count (`swinv2.forward_flops`: 11.84 for SwinV2-T window 8
at 256², timm's 5.92 GMAC), times 3 for a training step (forward and two backward matmuls each);
the torch rows do the same work and get the same count; the VQA row counts its window-16 backbone
only. (XLA's cost analysis of the GPU program is no use here: it leaves out the matmuls it hands
to cuBLAS.) Achieved TFLOP/s = GFLOP/frame × frames/s, as a fraction of the jnp.dot ceiling.
"compile s" is the XLA compilation of the timed jax program.
Ratios are jax frames/s ÷ reference frames/s (> 1: jax is faster), one per jax backbone row and
torch mode ("jax[pallas]/timm-compiled infer"; the VQA rows have no torch counterpart), and
pallas ÷ xla frames/s of each jax row ("pallas/xla train") when both paths ran. The last line of
output is the whole result as JSON; --json also writes it to a file, and rewrites that file after
every row ("complete": false until the end), so a run stopped by a time limit keeps the rows it
finished.

Inputs are random (never zeros) and rotate between two sets; parameters get a small random
jitter, because fresh SwinV2 blocks start as the identity (zero res-post-norm scales).
JAX claims the GPU first and without preallocation (XLA_PYTHON_CLIENT_PREALLOCATE=false, unless
set): torch then loads against the CUDA libraries JAX already loaded and gets the memory JAX does
not use. Any row that fails (torch.compile, out of memory) prints its error and the run goes on.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import json
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, NamedTuple

# Before jax is imported: the torch rows share the GPU, and a preallocating JAX would hold 75%.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # `configs` lives at the repository root, beside `jaxvqa`
  sys.path.insert(0, str(REPO_ROOT))

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvqa.train import losses, optim, steps
from jaxvqa.models import swinv2, swinv2_presets, vqa

MODEL_NAME = "swinv2_tiny_window8_256"
DROP_PATH_RATE = 0.1
LEARNING_RATE = 1e-4
WEIGHT_DECAY = 0.05
PARAM_JITTER = 0.02
INPUT_SETS = 2
# Only sets the VQA row's learning-rate schedule, which does not change the step's cost.
VQA_STEPS_PER_EPOCH = 100


@dataclasses.dataclass(frozen=True)
class Sizes:
  """What one run measures; `full` is the issue's setup, `smoke` a CPU-sized stand-in."""

  batch: int
  image_size: int
  backbone: dict  # SwinV2 field values, shared by the jax model and the torch reference
  matmul_size: int
  vqa_config: Any  # ml_collections.ConfigDict with model, data, loss and optim sections

  @classmethod
  def full(cls, batch: int) -> "Sizes":
    from configs import default

    return cls(
        batch=batch,
        image_size=256,
        backbone=dict(swinv2_presets.VARIANTS[MODEL_NAME], drop_path_rate=DROP_PATH_RATE),
        matmul_size=8192,
        vqa_config=default.get_config(),
    )

  @classmethod
  def smoke(cls, batch: int) -> "Sizes":
    from configs import demo

    config = demo.get_config("scratch")
    config.model.dtype = "bfloat16"  # the full run's compute path, on a tiny model
    config.data.num_frames = 2
    config.data.frame_size = 64
    backbone = dict(config.model.backbone.to_dict(), drop_path_rate=DROP_PATH_RATE)
    return cls(batch=batch, image_size=64, backbone=backbone, matmul_size=512, vqa_config=config)

  def with_attention(self, attention_impl: str) -> "Sizes":
    """The same sizes, the backbone and the VQA model's backbone on window-attention path
    `attention_impl`."""
    vqa_config = self.vqa_config.copy_and_resolve_references()
    vqa_config.model.backbone.attention_impl = attention_impl
    return dataclasses.replace(
        self,
        backbone=dict(self.backbone, attention_impl=attention_impl),
        vqa_config=vqa_config,
    )


@dataclasses.dataclass
class Row:
  name: str
  frames_per_iteration: int
  seconds_per_iteration: list[float] = dataclasses.field(default_factory=list)  # one per repeat
  flops_per_frame: float | None = None
  compile_seconds: float | None = None  # jax rows: XLA compilation of the timed program
  error: str | None = None

  @property
  def frames_per_second(self) -> float | None:
    if not self.seconds_per_iteration:
      return None
    return self.frames_per_iteration / statistics.median(self.seconds_per_iteration)

  @property
  def spread(self) -> float | None:
    if not self.seconds_per_iteration:
      return None
    median = statistics.median(self.seconds_per_iteration)
    return (max(self.seconds_per_iteration) - min(self.seconds_per_iteration)) / median

  def achieved_flops(self) -> float | None:
    if self.flops_per_frame is None or self.frames_per_second is None:
      return None
    return self.flops_per_frame * self.frames_per_second


# ----------------------------------------------------------------------------------------------
# Timing


def time_repeats(run_iterations: Callable[[int], None], iters: int, repeats: int) -> list[float]:
  """Seconds per iteration of each repeat. `run_iterations(k)` returns once the device is idle."""
  seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    run_iterations(iters)
    seconds.append((time.perf_counter() - start) / iters)
  return seconds


def measure(name: str, frames_per_iteration: int, body: Callable[[], tuple]) -> Row:
  """Runs `body` → (seconds per iteration, flops per frame[, compile seconds]); an error ends
  this row only."""
  print(f"[{name}] running ...", flush=True)
  started = time.perf_counter()
  row = Row(name, frames_per_iteration)
  try:
    row.seconds_per_iteration, row.flops_per_frame, *compile_seconds = body()
    row.compile_seconds = compile_seconds[0] if compile_seconds else None
  except Exception as error:  # one broken row (torch.compile, OOM) must not cost the others
    lines = traceback.format_exc().splitlines()
    print("\n".join(lines[-30:]), file=sys.stderr, flush=True)
    message = str(error).strip().splitlines()
    row.error = f"{type(error).__name__}: {message[0] if message else ''}"[:300]
  finally:
    gc.collect()
  outcome = row.error or f"{1e3 * statistics.median(row.seconds_per_iteration):.2f} ms/iteration"
  print(f"[{name}] {outcome} ({time.perf_counter() - started:.0f} s with warm-up)", flush=True)
  return row


# ----------------------------------------------------------------------------------------------
# JAX


TRAIN_FLOPS_FACTOR = 3  # a training step: the forward matmuls and two backward ones each


def backbone_flops_per_frame(model: swinv2.SwinV2, image_size: int, work: str) -> float:
  forward = swinv2.forward_flops(model, image_size, image_size)
  return float(forward * (TRAIN_FLOPS_FACTOR if work == "train" else 1))


def lower_and_compile(jitted, *args) -> tuple[Any, float]:
  """(compiled, seconds the XLA compilation took) of a jitted function."""
  lowered = jitted.lower(*args)
  print("  compiling ...", flush=True)
  started = time.perf_counter()
  compiled = lowered.compile()
  seconds = time.perf_counter() - started
  print(f"  compiled in {seconds:.1f} s", flush=True)
  return compiled, seconds


def init_jittered_params(model: nn.Module, *inputs: np.ndarray, seed: int) -> Any:
  """The module's initial params + PARAM_JITTER·N(0, 1), so no weight (or activation) is exactly
  zero; made on the host CPU like the trainer's (`steps.on_host`), then put on the device."""

  def init(rng):
    params = model.init(rng, *inputs)["params"]
    leaves, treedef = jax.tree.flatten(params)
    noisy = [
        leaf
        + PARAM_JITTER * jax.random.normal(jax.random.fold_in(rng, 1 + i), leaf.shape, leaf.dtype)
        for i, leaf in enumerate(leaves)
    ]
    return jax.tree.unflatten(treedef, noisy)

  return jax.device_put(steps.on_host(lambda: jax.jit(init)(jax.random.PRNGKey(seed))))


def jax_random_images(sizes: Sizes) -> list[jax.Array]:
  """INPUT_SETS distinct batches [B, S, S, 3] bf16, as normalised pixels would be."""
  shape = (sizes.batch, sizes.image_size, sizes.image_size, 3)
  keys = jax.random.split(jax.random.PRNGKey(1), INPUT_SETS)
  return [jax.random.normal(key, shape, jnp.bfloat16) for key in keys]


def jax_backbone(sizes: Sizes) -> tuple[swinv2.SwinV2, Any]:
  """(module, jittered fp32 params) of the bf16-compute SwinV2."""
  model = swinv2.SwinV2(**sizes.backbone, dtype=jnp.bfloat16, param_dtype=jnp.float32)
  dummy = np.zeros((1, sizes.image_size, sizes.image_size, 3), jnp.bfloat16)
  return model, init_jittered_params(model, dummy, seed=0)


def time_matmul_jax(size: int, args) -> tuple[list[float], float]:
  keys = jax.random.split(jax.random.PRNGKey(2), 2 * INPUT_SETS)
  operands = [jax.random.normal(key, (size, size), jnp.bfloat16) for key in keys]
  pairs = list(zip(operands[0::2], operands[1::2]))
  matmul = jax.jit(jnp.dot).lower(*pairs[0]).compile()

  def run(k):
    jax.block_until_ready([matmul(*pairs[i % INPUT_SETS]) for i in range(k)])

  run(args.warmup)
  return time_repeats(run, args.iters, args.repeats), 2.0 * size**3


def time_jax_backbone_inference(sizes: Sizes, args) -> tuple:
  model, params = jax_backbone(sizes)
  images = jax_random_images(sizes)
  forward = jax.jit(lambda params, images: model.apply({"params": params}, images).pooled)
  compiled, compile_seconds = lower_and_compile(forward, params, images[0])

  def run(k):
    jax.block_until_ready([compiled(params, images[i % INPUT_SETS]) for i in range(k)])

  run(args.warmup)
  return (
      time_repeats(run, args.iters, args.repeats),
      backbone_flops_per_frame(model, sizes.image_size, "infer"),
      compile_seconds,
  )


def time_train_steps(compiled, state, inputs: list, args) -> tuple[list[float], list]:
  """Times `state, aux = compiled(state, inputs[i])`, the state donated and carried on.

  Returns the seconds per iteration of each repeat and the aux outputs of the last repeat's
  steps.
  """
  last_outputs = []

  def run(k):
    nonlocal state, last_outputs
    last_outputs = []
    for i in range(k):
      state, aux = compiled(state, inputs[i % len(inputs)])
      last_outputs.append(aux)
    jax.block_until_ready((state, last_outputs))

  run(args.warmup)
  return time_repeats(run, args.iters, args.repeats), last_outputs


class BackboneTrainState(NamedTuple):
  step: jax.Array
  params: Any
  opt_state: Any


def backbone_train_step(
    state: BackboneTrainState,
    images: jax.Array,
    *,
    model: swinv2.SwinV2,
    tx: optax.GradientTransformation,
) -> tuple[BackboneTrainState, jax.Array]:
  """Forward, loss = mean(pooled²), backward, AdamW: the backbone's share of a training step."""
  rngs = {swinv2.DROP_PATH_RNG: jax.random.fold_in(jax.random.PRNGKey(3), state.step)}

  def loss_fn(params):
    pooled = model.apply({"params": params}, images, train=True, rngs=rngs).pooled
    return jnp.mean(jnp.square(pooled.astype(jnp.float32)))

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return BackboneTrainState(state.step + 1, params, opt_state), loss


def jax_backbone_train_step(model: swinv2.SwinV2, params: Any) -> tuple[BackboneTrainState, Any]:
  """(initial state, jitted `backbone_train_step` that donates the state) with optax AdamW."""
  tx = optax.adamw(LEARNING_RATE, weight_decay=WEIGHT_DECAY)
  state = jax.jit(
      lambda params: BackboneTrainState(jnp.zeros((), jnp.int32), params, tx.init(params))
  )(params)
  step = jax.jit(functools.partial(backbone_train_step, model=model, tx=tx), donate_argnums=0)
  return state, step


def time_jax_backbone_training(sizes: Sizes, args) -> tuple:
  model, params = jax_backbone(sizes)
  images = jax_random_images(sizes)
  state, step = jax_backbone_train_step(model, params)
  compiled, compile_seconds = lower_and_compile(step, state, images[0])
  seconds, _ = time_train_steps(compiled, state, images, args)
  return seconds, backbone_flops_per_frame(model, sizes.image_size, "train"), compile_seconds


def synthetic_vqa_batch(data_config, seed: int) -> dict[str, np.ndarray]:
  """A global batch in the loader's format (jaxvqa/data/pipeline.py), groups laid out group-major
  like `GroupBatchSampler`'s, so the rank and group-contrastive losses have pairs to compare."""
  groups, per_group = data_config.groups_per_batch, data_config.videos_per_group
  videos, frames, size = groups * per_group, data_config.num_frames, data_config.frame_size
  rng = np.random.default_rng(seed)
  return {
      "frames": rng.integers(0, 256, (videos, frames, size, size, 3), dtype=np.uint8),
      "label": rng.uniform(0.0, 100.0, videos).astype(np.float32),
      "group": np.repeat(np.arange(groups, dtype=np.int32), per_group),
      "mask": np.ones(videos, bool),
      "index": np.arange(videos, dtype=np.int32),
  }


def vqa_frames_per_step(config) -> int:
  return config.data.groups_per_batch * config.data.videos_per_group * config.data.num_frames


def time_jax_vqa_training(sizes: Sizes, args) -> tuple:
  config = sizes.vqa_config
  model = vqa.build_vqa_model(config.model)
  clip = (1, config.data.num_frames, config.data.frame_size, config.data.frame_size, 3)
  params = init_jittered_params(model, np.zeros(clip, np.uint8), seed=config.seed)
  tx = optim.build_optimizer(config.optim, VQA_STEPS_PER_EPOCH, freeze_backbone=False)
  state = jax.jit(lambda params: steps.TrainState.create(params, tx))(params)
  train_step = steps.jit_train_step(
      model, losses.LossWeights(**config.loss), config.optim.ema_decay, config.seed + 1
  )
  # Already on the device: this row times the step, not the host-to-device copy of the loader.
  batches = [jax.device_put(synthetic_vqa_batch(config.data, seed)) for seed in range(INPUT_SETS)]
  compiled, compile_seconds = lower_and_compile(train_step, state, batches[0])
  seconds, metrics_seen = time_train_steps(compiled, state, batches, args)
  # A skipped (non-finite) update costs less than a real one, so it would flatter the row.
  skipped = sum(1 for metrics in metrics_seen if not float(metrics["finite"]))
  if skipped:
    print(
        f"[jax vqa train] warning: {skipped} of the last {len(metrics_seen)} steps skipped a "
        "non-finite update",
        file=sys.stderr,
    )
  return (
      seconds,
      backbone_flops_per_frame(model.backbone, config.data.frame_size, "train"),
      compile_seconds,
  )


# ----------------------------------------------------------------------------------------------
# PyTorch


def torch_backbone(reference: str, sizes: Sizes):
  """The PyTorch SwinV2 built from the jax model's field values: images NCHW → pooled [B, C].

  reference "timm" is the issue's comparison; "hf" (transformers' Swinv2Model) stands in where
  timm is not installed.
  """
  import torch

  fields = sizes.backbone
  common = dict(
      embed_dim=fields["embed_dim"],
      depths=tuple(fields["depths"]),
      num_heads=tuple(fields["num_heads"]),
      window_size=fields["window_size"],
      mlp_ratio=fields.get("mlp_ratio", 4.0),
      drop_path_rate=fields["drop_path_rate"],
      pretrained_window_sizes=tuple(fields["pretrained_window_sizes"]),
  )
  if reference == "timm":
    import timm

    return timm.create_model(
        MODEL_NAME, pretrained=False, num_classes=0, img_size=sizes.image_size, **common
    )

  import transformers

  class PooledSwinv2(torch.nn.Module):

    def __init__(self):
      super().__init__()
      self.swinv2 = transformers.Swinv2Model(
          transformers.Swinv2Config(image_size=sizes.image_size, patch_size=4, **common)
      )

    def forward(self, images):
      return self.swinv2(pixel_values=images).pooler_output

  return PooledSwinv2()


class TorchSetup(NamedTuple):
  torch: Any
  device: str
  images: list  # INPUT_SETS batches [B, 3, S, S] bf16, channels-last

  def synchronize(self) -> None:
    if self.device == "cuda":
      self.torch.cuda.synchronize()

  def autocast(self):
    return self.torch.autocast(self.device, dtype=self.torch.bfloat16)


def torch_setup(sizes: Sizes) -> TorchSetup:
  import torch

  # XLA lets fp32 matmuls use TF32 by default; let torch do the same for its few fp32 matmuls.
  torch.set_float32_matmul_precision("high")
  torch.backends.cudnn.benchmark = True
  device = "cuda" if torch.cuda.is_available() else "cpu"
  generator = torch.Generator().manual_seed(1)
  shape = (sizes.batch, 3, sizes.image_size, sizes.image_size)
  images = [
      torch.randn(shape, generator=generator)
      .to(device, torch.bfloat16)
      .contiguous(memory_format=torch.channels_last)
      for _ in range(INPUT_SETS)
  ]
  return TorchSetup(torch, device, images)


def torch_model(setup: TorchSetup, reference: str, sizes: Sizes, *, train: bool):
  torch = setup.torch
  model = torch_backbone(reference, sizes).to(setup.device).to(memory_format=torch.channels_last)
  with torch.no_grad():  # the same reason as `init_jittered_params`
    for parameter in model.parameters():
      parameter.add_(torch.randn_like(parameter), alpha=PARAM_JITTER)
  return model.train(train)


def torch_adamw(setup: TorchSetup, parameters):
  try:
    return setup.torch.optim.AdamW(
        parameters, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY, fused=True
    )
  except (RuntimeError, TypeError):  # no fused kernel for this device or build
    return setup.torch.optim.AdamW(parameters, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)


def time_torch_matmul(setup: TorchSetup, size: int, args) -> tuple[list[float], float]:
  torch = setup.torch
  generator = torch.Generator().manual_seed(2)
  pairs = [
      tuple(
          torch.randn(size, size, generator=generator).to(setup.device, torch.bfloat16)
          for _ in range(2)
      )
      for _ in range(INPUT_SETS)
  ]

  def run(k):
    for i in range(k):
      torch.matmul(*pairs[i % INPUT_SETS])
    setup.synchronize()

  run(args.warmup)
  return time_repeats(run, args.iters, args.repeats), 2.0 * size**3


def torch_forward(
    setup: TorchSetup, reference: str, sizes: Sizes, args, *, compiled: bool, train: bool
):
  """(the reference model, its forward: torch.compile'd when `compiled`)."""
  model = torch_model(setup, reference, sizes, train=train)
  return model, setup.torch.compile(model, mode=args.compile_mode) if compiled else model


def time_torch_inference(
    setup: TorchSetup, reference: str, sizes: Sizes, args, *, compiled: bool
) -> list[float]:
  torch = setup.torch
  _, forward = torch_forward(setup, reference, sizes, args, compiled=compiled, train=False)

  def run(k):
    with torch.inference_mode(), setup.autocast():
      for i in range(k):
        forward(setup.images[i % INPUT_SETS])
    setup.synchronize()

  run(args.warmup)
  return time_repeats(run, args.iters, args.repeats)


def time_torch_training(
    setup: TorchSetup, reference: str, sizes: Sizes, args, *, compiled: bool
) -> list[float]:
  model, forward = torch_forward(setup, reference, sizes, args, compiled=compiled, train=True)
  optimizer = torch_adamw(setup, model.parameters())

  def run(k):
    for i in range(k):
      with setup.autocast():
        pooled = forward(setup.images[i % INPUT_SETS])
      loss = pooled.float().square().mean()
      loss.backward()
      optimizer.step()
      optimizer.zero_grad(set_to_none=True)
    setup.synchronize()

  run(args.warmup)
  return time_repeats(run, args.iters, args.repeats)


def release_torch_memory() -> None:
  """Hands torch's cached GPU memory back, so the jax rows after it can grow into it."""
  gc.collect()
  torch = sys.modules.get("torch")
  if torch is not None and torch.cuda.is_available():
    torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------
# Report


def environment(reference: str) -> dict[str, Any]:
  import flax
  import jaxlib

  info: dict[str, Any] = {
      "python": platform.python_version(),
      "host": platform.node(),
      "jax": jax.__version__,
      "jaxlib": jaxlib.__version__,
      "flax": flax.__version__,
      "optax": optax.__version__,
      "jax_backend": jax.default_backend(),
      "jax_devices": [device.device_kind for device in jax.devices()],
      "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
      "XLA_PYTHON_CLIENT_PREALLOCATE": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"),
  }
  try:
    import torch
  except ImportError as error:
    info["torch"] = f"not importable: {error}"
    return info
  info.update(
      torch=torch.__version__,
      torch_cuda=torch.version.cuda,
      torch_cudnn=torch.backends.cudnn.version(),
      torch_device=torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
  )
  for package in ("timm", "transformers") if reference == "hf" else ("timm",):
    try:
      info[package] = __import__(package).__version__
    except ImportError as error:
      info[package] = f"not importable: {error}"
  return info


def jax_row_name(work: str, attention_impl: str) -> str:
  """The row's name, e.g. "jax backbone infer [pallas]"; work "vqa train" names the VQA row."""
  prefix = "jax vqa train" if work == "vqa train" else f"jax backbone {work}"
  return f"{prefix} [{attention_impl}]"


def ratios(
    rows: dict[str, Row], reference: str, attention_impls: tuple[str, ...]
) -> dict[str, float | None]:
  """jax frames/s ÷ reference frames/s for each (attention path, work, torch mode), then
  pallas ÷ xla frames/s for each jax row when both paths ran."""

  def speed(name: str) -> float | None:
    row = rows.get(name)
    return row and row.frames_per_second

  def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator and denominator else None

  result = {}
  for impl in attention_impls:
    for work in ("infer", "train"):
      for mode in ("eager", "compiled"):
        result[f"jax[{impl}]/{reference}-{mode} {work}"] = ratio(
            speed(jax_row_name(work, impl)), speed(f"{reference} {mode} {work}")
        )
  if {"xla", "pallas"} <= set(attention_impls):
    for work in ("infer", "train", "vqa train"):
      result[f"pallas/xla {work}"] = ratio(
          speed(jax_row_name(work, "pallas")), speed(jax_row_name(work, "xla"))
      )
  return result


def format_number(value: float | None, spec: str) -> str:
  return "—" if value is None else format(value, spec)


def print_table(result: dict[str, Any], rows: list[Row]) -> None:
  ceiling = result["ceiling_flops"]
  print()
  print("environment: " + ", ".join(f"{key}={value}" for key, value in result["env"].items()))
  print("settings:    " + ", ".join(f"{key}={value}" for key, value in result["settings"].items()))
  for name, ceiling_row in result["ceilings"].items():
    outcome = ceiling_row["error"] or (
        f"{ceiling_row['tflops']:.1f} TFLOP/s (spread {ceiling_row['spread']:.1%})"
    )
    print(f"bf16 matmul ceiling, {name}: {outcome}")
  header = (
      f"{'row':<30}{'frames/s':>11}{'ms/iter':>10}{'spread':>8}{'GFLOP/frame':>13}"
      f"{'TFLOP/s':>9}{'of ceiling':>12}{'compile s':>11}"
  )
  print()
  print(header)
  print("-" * len(header))
  for row in rows:
    if row.error:
      print(f"{row.name:<30}  failed: {row.error}")
      continue
    achieved = row.achieved_flops()
    milliseconds = 1e3 * statistics.median(row.seconds_per_iteration)
    print(
        f"{row.name:<30}{row.frames_per_second:>11,.1f}{milliseconds:>10.2f}"
        f"{row.spread:>8.1%}"
        f"{format_number(row.flops_per_frame and row.flops_per_frame / 1e9, '.2f'):>13}"
        f"{format_number(achieved and achieved / 1e12, '.1f'):>9}"
        f"{format_number(achieved and ceiling and achieved / ceiling, '.1%'):>12}"
        f"{format_number(row.compile_seconds, '.1f'):>11}"
    )
  print()
  if not any(result["ratios"].values()):
    print("no ratios: the torch rows and the second attention path were skipped or failed")
  for name, value in result["ratios"].items():
    if value:
      print(f"{name:<36}{value:.2f}x")


def row_json(row: Row, ceiling: float | None) -> dict[str, Any]:
  achieved = row.achieved_flops()
  return {
      "name": row.name,
      "frames_per_iteration": row.frames_per_iteration,
      "frames_per_s": row.frames_per_second,
      "spread": row.spread,
      "seconds_per_iteration": row.seconds_per_iteration,
      "flops_per_frame": row.flops_per_frame,
      "achieved_tflops": achieved and achieved / 1e12,
      "fraction_of_ceiling": achieved and ceiling and achieved / ceiling,
      "compile_seconds": row.compile_seconds,
      "error": row.error,
  }


# ----------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
      "--smoke",
      action="store_true",
      help="tiny sizes (batch 2, 64² input, the demo config's model), for a CPU",
  )
  parser.add_argument(
      "--batch", type=int, help="frames per backbone iteration (default 64; smoke 2)"
  )
  parser.add_argument("--iters", type=int, help="iterations per timed repeat (default 20; smoke 2)")
  parser.add_argument(
      "--repeats", type=int, help="timed repeats, median reported (default 5; smoke 2)"
  )
  parser.add_argument("--warmup", type=int, help="untimed iterations first (default 3; smoke 1)")
  parser.add_argument(
      "--reference",
      choices=("timm", "hf"),
      default="timm",
      help="PyTorch model to compare with; hf (transformers Swinv2Model) stands in "
      "where timm is missing",
  )
  parser.add_argument(
      "--compile-mode",
      default="default",
      help="torch.compile mode (default, reduce-overhead, max-autotune, ...)",
  )
  parser.add_argument("--skip-torch", action="store_true", help="no PyTorch rows")
  parser.add_argument(
      "--skip-jax",
      action="store_true",
      help="no jax rows: with JAX_PLATFORMS=cpu, the torch rows in a process where JAX never "
      "touches the GPU",
  )
  parser.add_argument("--skip-compile", action="store_true", help="no torch.compile rows")
  parser.add_argument(
      "--skip-eager", action="store_true", help="no eager torch rows (torch.compile's only)"
  )
  parser.add_argument("--skip-vqa", action="store_true", help="no full VQA train-step row")
  parser.add_argument(
      "--work",
      choices=("infer", "train", "both", "none"),
      default="both",
      help="backbone rows to time: inference, training step, both, or none (the VQA row alone)",
  )
  parser.add_argument(
      "--attention",
      default=",".join(swinv2.ATTENTION_PATHS),
      help="comma list of window-attention paths (SwinV2.attention_impl) to time the jax rows "
      f"with, in this order (default {','.join(swinv2.ATTENTION_PATHS)}; \"auto\" is the "
      "kernel on a GPU)",
  )
  parser.add_argument(
      "--json", type=Path, help="also write the result as JSON here (rewritten after each row)"
  )
  args = parser.parse_args(argv)
  args.attention = tuple(name.strip() for name in args.attention.split(",") if name.strip())
  unknown = [name for name in args.attention if name not in swinv2.ATTENTION_IMPLS]
  if unknown or not args.attention or len(set(args.attention)) < len(args.attention):
    parser.error(
        f"--attention {','.join(args.attention)}: give distinct names out of "
        f"{', '.join(swinv2.ATTENTION_IMPLS)}"
    )
  defaults = (
      dict(batch=2, iters=2, repeats=2, warmup=1)
      if args.smoke
      else dict(batch=64, iters=20, repeats=5, warmup=3)
  )
  for name, value in defaults.items():
    if getattr(args, name) is None:
      setattr(args, name, value)
  return args


def torch_modes(args: argparse.Namespace) -> tuple[str, ...]:
  """The torch rows' modes that --skip-eager / --skip-compile leave."""
  skipped = {"eager": args.skip_eager, "compiled": args.skip_compile}
  return tuple(mode for mode in ("eager", "compiled") if not skipped[mode])


def runnable_attention(requested: tuple[str, ...], backend: str, smoke: bool) -> tuple[str, ...]:
  """The requested attention paths that can run here; prints one line for a skipped "pallas"."""
  if "pallas" not in requested or backend == "gpu":
    return requested
  if smoke:
    print(f"[pallas] jax runs on {backend}: the kernel runs in Pallas' interpreter (slow)")
    return requested
  print(
      f"[pallas] skipped: the fused kernel compiles for a CUDA GPU only and jax runs on "
      f"{backend} (--smoke runs it in Pallas' interpreter)"
  )
  return tuple(name for name in requested if name != "pallas")


def main(argv=None) -> None:
  args = parse_args(argv)
  # JAX first: it loads its CUDA libraries before torch can load other versions of them.
  backend = jax.default_backend()
  if backend != "gpu" and not args.smoke and not args.skip_jax:
    print(
        f"warning: jax runs on {backend}, not a GPU; these are not the issue's numbers",
        file=sys.stderr,
    )
  sizes = Sizes.smoke(args.batch) if args.smoke else Sizes.full(args.batch)
  attention_impls = runnable_attention(args.attention, backend, args.smoke)
  reference = args.reference
  env = environment(reference)

  ceilings: dict[str, Row] = {}
  rows: list[Row] = []

  def report(complete: bool) -> dict[str, Any]:
    """The result so far; written to --json after every row."""
    result = build_result(env, args, sizes, attention_impls, ceilings, rows, complete)
    if args.json:
      args.json.parent.mkdir(parents=True, exist_ok=True)
      args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result

  def add(row: Row) -> None:
    rows.append(row)
    report(complete=False)

  # A ceiling row's "frame" is one matmul, so its achieved flops are the matmul's rate.
  if not args.skip_jax:
    ceilings["jnp.dot"] = measure(
        f"ceiling jnp.dot {sizes.matmul_size}³",
        1,
        lambda: time_matmul_jax(sizes.matmul_size, args),
    )
  works = {"both": ("infer", "train"), "none": ()}.get(args.work, (args.work,))
  timers = {"infer": time_jax_backbone_inference, "train": time_jax_backbone_training}
  flops_per_frame: dict[str, float | None] = {}
  for work in works:
    for impl in () if args.skip_jax else attention_impls:
      row = measure(
          jax_row_name(work, impl),
          sizes.batch,
          lambda: timers[work](sizes.with_attention(impl), args),
      )
      add(row)
      flops_per_frame[work] = flops_per_frame.get(work) or row.flops_per_frame

  if not args.skip_torch:
    try:
      setup = torch_setup(sizes)
    except Exception as error:  # torch missing or broken: the jax rows still count
      print(f"[torch] unavailable, no torch rows: {type(error).__name__}: {error}", file=sys.stderr)
      setup = None
    if setup is not None:
      if setup.device != "cuda" and backend == "gpu":
        print("warning: torch sees no CUDA device; its rows ran on the CPU", file=sys.stderr)
      ceilings["torch.matmul"] = measure(
          f"ceiling torch.matmul {sizes.matmul_size}³",
          1,
          lambda: time_torch_matmul(setup, sizes.matmul_size, args),
      )
      modes = torch_modes(args)
      torch_timers = {"infer": time_torch_inference, "train": time_torch_training}
      for work, time_work in ((work, torch_timers[work]) for work in works):
        for mode in modes:
          add(
              measure(
                  f"{reference} {mode} {work}",
                  sizes.batch,
                  lambda: (
                      time_work(setup, reference, sizes, args, compiled=mode == "compiled"),
                      flops_per_frame.get(work),
                  ),
              )
          )
          release_torch_memory()

  if not args.skip_vqa and not args.skip_jax:
    for impl in attention_impls:
      add(
          measure(
              jax_row_name("vqa train", impl),
              vqa_frames_per_step(sizes.vqa_config),
              lambda: time_jax_vqa_training(sizes.with_attention(impl), args),
          )
      )

  result = report(complete=True)
  print_table(result, rows)
  print(json.dumps(result))


def build_result(
    env: dict[str, Any],
    args: argparse.Namespace,
    sizes: Sizes,
    attention_impls: tuple[str, ...],
    ceilings: dict[str, Row],
    rows: list[Row],
    complete: bool,
) -> dict[str, Any]:
  ceiling_row = ceilings.get("jnp.dot")
  ceiling_flops = ceiling_row and ceiling_row.achieved_flops()
  vqa_config = sizes.vqa_config
  return {
      "complete": complete,
      "env": env,
      "settings": {
          "smoke": args.smoke,
          "batch": sizes.batch,
          "image_size": sizes.image_size,
          "iters": args.iters,
          "repeats": args.repeats,
          "warmup": args.warmup,
          "reference": args.reference,
          "compile_mode": args.compile_mode,
          "torch_modes": [] if args.skip_torch else list(torch_modes(args)),
          "attention": list(attention_impls),
          "attention_requested": list(args.attention),
          "backbone": {
              key: list(value) if isinstance(value, tuple) else value
              for key, value in sizes.backbone.items()
          },
          "vqa_batch": [
              vqa_config.data.groups_per_batch * vqa_config.data.videos_per_group,
              vqa_config.data.num_frames,
              vqa_config.data.frame_size,
          ],
          "vqa_window": vqa_config.model.backbone.window_size,
      },
      "ceiling_flops": ceiling_flops,
      "ceilings": {
          name: {
              "tflops": row.achieved_flops() and row.achieved_flops() / 1e12,
              "spread": row.spread,
              "error": row.error,
          }
          for name, row in ceilings.items()
      },
      "rows": [row_json(row, ceiling_flops) for row in rows],
      "ratios": ratios({row.name: row for row in rows}, args.reference, attention_impls),
  }


if __name__ == "__main__":
  main()

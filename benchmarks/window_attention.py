"""The fused Pallas window attention against the XLA path, checked and timed in one run (issue 17).

    python benchmarks/window_attention.py [--window 8|16] [--batch 64] [--iters 20] [--repeats 5]
    python benchmarks/window_attention.py --backbone    # also SwinV2-T inference and train step

Shapes are SwinV2-T's at 256² (`swinv2_tiny_window8_256`, as throughput.py; --window 16 is
configs/default.py's backbone): per stage, --batch images' windows of N = window² tokens, its
heads of 32 channels, the position bias, and the shift mask for the odd (shifted) blocks. Both
paths take the stage's map of q, k, v and return the map: XLA's rolls it, cuts it into windows and
puts the result back (as the model does), the kernel gathers each window's rows itself.

1. Check, on a batch of 2: `window_attention_pallas.shifted_window_attention` (Triton) against
   `window_attention.shifted_window_attention` (XLA at fp32 "highest" matmul precision) for each stage
   geometry: fp32 forward and gradients of q/k/v, logit scale and position bias (max error
   relative to the largest value, bound 1e-4), and bf16 output against that fp32 reference
   (relative L2, bound 1.5e-2, with XLA's own bf16 error beside it). A failed check is printed
   and makes the exit status 1, after the timings.
2. Time, bf16 at --batch: XLA and Pallas, the forward alone and forward + backward (the vjp of
   all three inputs), each compiled, warmed up (--warmup calls) and timed as --repeats runs of
   --iters calls ending in block_until_ready; the median run. Printed per stage and summed over
   the backbone's blocks, with XLA ÷ Pallas (> 1: the kernel is faster), and, last, forward +
   backward with the kernel's forward and XLA's gradient (`backward="xla"`).
3. --backbone: throughput.py's jax backbone rows (inference; forward, backward and AdamW) with
   attention_impl "xla" and then "pallas", and their ratio.

Without a GPU there is nothing to time: the script says so, checks the interpreted kernel on one
small case against XLA, and exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxvqa.models import swinv2, swinv2_presets
from jaxvqa.models import window_attention as xla_attention
from jaxvqa.models import window_attention_pallas as pallas_attention
from jaxvqa.models import windows

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput  # noqa: E402  (its timing loop and backbone rows; this file lives beside it)

IMAGE_SIZE = 256
CHECK_BATCH = 2
FP32_BOUND = 1e-4
BF16_BOUND = 1.5e-2


class Stage(NamedTuple):
  """One stage's attention geometry and how many of its blocks run unshifted / shifted."""

  index: int
  side: int  # the map's height and width, padded to a multiple of the window
  window: windows.StageWindow
  heads: int
  head_dim: int
  unshifted_blocks: int
  shifted_blocks: int

  @property
  def tokens(self) -> int:
    return self.window.size**2

  @property
  def num_windows(self) -> int:
    return (self.side // self.window.size) ** 2


def stages_of(variant: str) -> list[Stage]:
  """The window attention shapes of each stage of `variant` at IMAGE_SIZE², as SwinV2 runs them."""
  fields = swinv2_presets.VARIANTS[variant]
  model = swinv2.SwinV2(**fields)
  grid = IMAGE_SIZE // model.patch_size
  stages = []
  for i, depth in enumerate(model.depths):
    height = grid // 2**i
    window = windows.stage_window(height, model.window_size)
    padded = -(-height // window.size) * window.size
    shifted = depth // 2 if window.shift else 0
    stages.append(
        Stage(
            index=i,
            side=padded,
            window=window,
            heads=model.num_heads[i],
            head_dim=model.embed_dim * 2**i // model.num_heads[i],
            unshifted_blocks=depth - shifted,
            shifted_blocks=shifted,
        )
    )
  return stages


def random_inputs(stage: Stage, batch: int, dtype, seed: int = 0):
  """qkv [B, H, W, 3, heads, d] (dtype), scale [heads], position bias [heads, N, N] (fp32)."""
  keys = jax.random.split(jax.random.key(seed), 3)
  qkv = jax.random.normal(
      keys[0], (batch, stage.side, stage.side, 3, stage.heads, stage.head_dim), dtype
  )
  scale = jnp.exp(jax.random.uniform(keys[1], (stage.heads,), minval=1.0, maxval=4.6))
  bias = 16.0 * jax.nn.sigmoid(jax.random.normal(keys[2], (stage.heads,) + (stage.tokens,) * 2))
  return qkv, scale, bias


def attention_fns(stage: Stage, shifted: bool, options: dict) -> dict[str, Callable]:
  """{"xla", "pallas"} → f(qkv, scale, bias) of the stage's unshifted or shifted blocks, the
  geometry and the shift mask folded in, as in the model."""
  window = stage.window if shifted else windows.StageWindow(stage.window.size, 0)
  mask = windows.shifted_window_mask(stage.side, stage.side, window)
  mask = None if mask is None else jnp.asarray(mask)
  geometry = dict(window=window.size, shift=window.shift)
  return {
      "xla": lambda qkv, scale, bias: xla_attention.shifted_window_attention(
          qkv, scale, bias, mask, **geometry
      ),
      # The kernel's own backward, whatever `default_backward` picks for this window.
      "pallas": lambda qkv, scale, bias: pallas_attention.shifted_window_attention(
          qkv, scale, bias, mask, **geometry, **dict(options, backward="kernel")
      ),
      # The kernel's forward, XLA's gradient (`backward="xla"`): timed forward + backward only.
      "xla bwd": lambda qkv, scale, bias: pallas_attention.shifted_window_attention(
          qkv, scale, bias, mask, **geometry, **dict(options, backward="xla")
      ),
  }


def with_vjp(attend: Callable) -> Callable:
  """(qkv, scale, bias, cotangent) → (output, gradients of the three inputs)."""

  def forward_backward(qkv, scale, bias, cotangent):
    out, vjp = jax.vjp(attend, qkv, scale, bias)
    return out, vjp(cotangent)

  return forward_backward


def relative_max_error(ours, reference) -> float:
  reference = np.asarray(reference, np.float64)
  return float(np.abs(np.asarray(ours, np.float64) - reference).max() / np.abs(reference).max())


def relative_l2_error(ours, reference) -> float:
  reference = np.asarray(reference, np.float64)
  return float(np.linalg.norm(np.asarray(ours, np.float64) - reference) / np.linalg.norm(reference))


def check(stages: list[Stage], options: dict) -> bool:
  """Prints each stage geometry's errors against XLA; True when all are within bounds."""
  passed = True
  for stage in stages:
    for shifted in [False, True] if stage.shifted_blocks else [False]:
      label = f"stage {stage.index} {'shifted' if shifted else 'unshifted'}"
      if not pallas_attention.supports(stage.tokens, stage.head_dim):
        print(f"  {label}: too small for the kernel, XLA runs it")
        continue
      fns = attention_fns(stage, shifted, options)
      qkv, scale, bias = random_inputs(stage, CHECK_BATCH, jnp.float32)
      cotangent = jax.random.normal(jax.random.key(1), qkv.shape[:3] + qkv.shape[4:])
      with jax.default_matmul_precision("highest"):
        reference, reference_grads = jax.jit(with_vjp(fns["xla"]))(qkv, scale, bias, cotangent)
        xla_bf16 = jax.jit(fns["xla"])(qkv.astype(jnp.bfloat16), scale, bias)
      ours, grads = jax.jit(with_vjp(fns["pallas"]))(qkv, scale, bias, cotangent)
      ours_bf16 = jax.jit(fns["pallas"])(qkv.astype(jnp.bfloat16), scale, bias)
      fp32 = [relative_max_error(ours, reference)] + [
          relative_max_error(g, r) for g, r in zip(grads, reference_grads)
      ]
      bf16 = relative_l2_error(ours_bf16, reference)
      ok = max(fp32) < FP32_BOUND and bf16 < BF16_BOUND
      passed &= ok
      print(
          f"  {label}: fp32 out {fp32[0]:.1e}, d(qkv, scale, bias) "
          f"{', '.join(f'{e:.1e}' for e in fp32[1:])}; bf16 out {bf16:.1e} "
          f"(XLA bf16 {relative_l2_error(xla_bf16, reference):.1e}) "
          f"{'ok' if ok else 'MISMATCH'}",
          flush=True,
      )
  return passed


def median_ms(function: Callable, inputs: tuple, args) -> float:
  """Median milliseconds per call of jitted `function(*inputs)`, compiled and warmed up first."""
  compiled = jax.jit(function).lower(*inputs).compile()

  def run(k):
    jax.block_until_ready([compiled(*inputs) for _ in range(k)])

  run(args.warmup)
  return 1e3 * statistics.median(throughput.time_repeats(run, args.iters, args.repeats))


def time_stages(stages: list[Stage], options: dict, args) -> None:
  """Prints ms per call for each stage and both paths, and the backbone's totals."""
  totals = {
      key: 0.0
      for key in ("xla fwd", "pallas fwd", "xla fwd+bwd", "pallas fwd+bwd", "xla bwd fwd+bwd")
  }
  print(
      f"{'stage':<18}{'windows×heads':>14}{'blocks':>8}"
      f"{'XLA fwd':>10}{'Pallas':>10}{'×':>7}{'XLA f+b':>10}{'Pallas':>10}{'×':>7}"
      f"{'P+XLA bwd':>11}   (ms)"
  )
  for stage in stages:
    variants = [(False, stage.unshifted_blocks), (True, stage.shifted_blocks)]
    for shifted, blocks in variants:
      if not blocks or not pallas_attention.supports(stage.tokens, stage.head_dim):
        continue
      fns = attention_fns(stage, shifted, options)
      qkv, scale, bias = random_inputs(stage, args.batch, jnp.bfloat16)
      cotangent = jnp.ones(qkv.shape[:3] + qkv.shape[4:], jnp.bfloat16)
      ms = {}
      for impl, attend in fns.items():
        if impl != "xla bwd":  # its forward is the kernel's
          ms[f"{impl} fwd"] = median_ms(attend, (qkv, scale, bias), args)
        ms[f"{impl} fwd+bwd"] = median_ms(with_vjp(attend), (qkv, scale, bias, cotangent), args)
      for key in totals:
        totals[key] += blocks * ms[key]
      label = f"{stage.index} {'shifted' if shifted else 'unshifted'}"
      print(
          f"{label:<18}{args.batch * stage.num_windows:>8}×{stage.heads:<5}{blocks:>8}"
          f"{ms['xla fwd']:>10.3f}{ms['pallas fwd']:>10.3f}"
          f"{ms['xla fwd'] / ms['pallas fwd']:>7.2f}"
          f"{ms['xla fwd+bwd']:>10.3f}{ms['pallas fwd+bwd']:>10.3f}"
          f"{ms['xla fwd+bwd'] / ms['pallas fwd+bwd']:>7.2f}{ms['xla bwd fwd+bwd']:>11.3f}",
          flush=True,
      )
  print(
      f"{'all blocks':<40}{totals['xla fwd']:>10.3f}{totals['pallas fwd']:>10.3f}"
      f"{totals['xla fwd'] / totals['pallas fwd']:>7.2f}"
      f"{totals['xla fwd+bwd']:>10.3f}{totals['pallas fwd+bwd']:>10.3f}"
      f"{totals['xla fwd+bwd'] / totals['pallas fwd+bwd']:>7.2f}{totals['xla bwd fwd+bwd']:>11.3f}"
  )


def time_backbone(variant: str, args) -> None:
  """throughput.py's backbone rows with each attention_impl, and Pallas ÷ XLA frames/s."""
  frames_per_second = {}
  for work, body in (
      ("inference", throughput.time_jax_backbone_inference),
      ("train step", throughput.time_jax_backbone_training),
  ):
    for impl in swinv2.ATTENTION_PATHS:
      backbone = dict(
          swinv2_presets.VARIANTS[variant],
          drop_path_rate=throughput.DROP_PATH_RATE,
          attention_impl=impl,
      )
      sizes = throughput.Sizes(
          batch=args.batch, image_size=IMAGE_SIZE, backbone=backbone, matmul_size=0, vqa_config=None
      )
      row = throughput.measure(f"backbone {work}, {impl}", args.batch, lambda: body(sizes, args))
      frames_per_second[work, impl] = row.frames_per_second
    xla, pallas = frames_per_second[work, "xla"], frames_per_second[work, "pallas"]
    if xla and pallas:
      print(
          f"backbone {work}: XLA {xla:,.0f} frames/s, Pallas {pallas:,.0f} frames/s, "
          f"Pallas ÷ XLA {pallas / xla:.2f}",
          flush=True,
      )


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--window", type=int, choices=(8, 16), default=8)
  parser.add_argument("--batch", type=int, default=64, help="images (default 64)")
  parser.add_argument("--iters", type=int, default=20, help="calls per timed run")
  parser.add_argument("--repeats", type=int, default=5, help="timed runs; the median is shown")
  parser.add_argument("--warmup", type=int, default=3, help="untimed calls after compiling")
  parser.add_argument("--block-rows", type=int, help="kernel option (default: min(N, 64))")
  parser.add_argument(
      "--windows-per-program",
      type=int,
      help="backward kernel option (default: chosen from the batch)",
  )
  parser.add_argument(
      "--backbone",
      action="store_true",
      help="also time the whole SwinV2-T with each attention_impl",
  )
  args = parser.parse_args()
  variant = f"swinv2_tiny_window{args.window}_256"
  options = {
      k: v
      for k, v in (
          ("block_rows", args.block_rows),
          ("windows_per_program", args.windows_per_program),
      )
      if v
  }
  stages = stages_of(variant)
  print(
      f"{variant} at {IMAGE_SIZE}², batch {args.batch}; JAX {jax.__version__}, "
      f"{jax.devices()[0].device_kind}",
      flush=True,
  )

  if jax.default_backend() != "gpu":
    print(
        "No GPU: the kernel's speed can only be measured on one (Triton). Checking the "
        "interpreted kernel against XLA on one small case instead."
    )
    small = stages[-2]._replace(heads=2)  # stage 2's four windows, two of its heads
    return 0 if check([small], dict(options, interpret=True)) else 1

  print(f"check against XLA, batch {CHECK_BATCH}:", flush=True)
  passed = check(stages, options)
  print(f"timings, bf16, batch {args.batch}:", flush=True)
  time_stages(stages, options, args)
  if args.backbone:
    time_backbone(variant, args)
  if not passed:
    print("MISMATCH: the kernel disagrees with XLA beyond the bounds above.")
  return 0 if passed else 1


if __name__ == "__main__":
  sys.exit(main())

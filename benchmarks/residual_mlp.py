"""The fused MLP half-block (`mlp_pallas`) against the XLA path, checked and timed in one run.

    python benchmarks/residual_mlp.py [--batch 64] [--iters 20] [--repeats 5]

Shapes are SwinV2-T's at 256² (the backbone of throughput.py): per stage, --batch images' tokens
of C channels and 4C hidden units. Both paths compute x + norm2(mlp(x)) of one `SwinV2Block`
with the same random parameters: XLA's is the block's own modules (fc1 with GELU in its epilogue,
fc2, then LayerNorm and the residual add), the kernel's is one Pallas call.

1. Check, on 2 images: fp32 kernel against XLA at "highest" matmul precision (max error over the
   largest value, bound 1e-4), and the bf16 kernel against that fp32 reference (relative L2,
   bound 1.5e-2, with XLA's own bf16 error beside it). A failed check makes the exit status 1.
2. Time, bf16 at --batch: the forward of each path per stage (median of --repeats runs of --iters
   calls), then summed over the backbone's blocks (2, 2, 6, 2), with XLA ÷ kernel (> 1: the
   kernel is faster).

Without a GPU: the interpreted kernel is checked on stage 3's shapes and nothing is timed.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

from jaxvqa.models import mlp_pallas, swinv2, swinv2_presets

sys.path.insert(0, str(Path(__file__).resolve().parent))
import window_attention as bench  # noqa: E402  (its timing and error helpers)

VARIANT = "swinv2_tiny_window8_256"
CHECK_BATCH = 2


def stages() -> list[tuple[int, int, int]]:
  """(side of the map, channels, blocks) of each SwinV2-T stage at 256²."""
  fields = swinv2_presets.VARIANTS[VARIANT]
  model = swinv2.SwinV2(**fields)
  side = bench.IMAGE_SIZE // model.patch_size
  return [(side // 2**i, model.embed_dim * 2**i, depth) for i, depth in enumerate(model.depths)]


def half_block(side: int, dim: int, batch: int, dtype, seed: int = 0) -> tuple:
  """(reference, params, x): the XLA path of one block's MLP half, random parameters in
  `mlp_pallas.residual_mlp`'s layout (fp32, as a model keeps them) and a map [batch, side, side,
  dim] in `dtype`."""
  hidden = 4 * dim
  keys = iter(jax.random.split(jax.random.key(seed), 8))
  normal = lambda shape, scale: scale * jax.random.normal(next(keys), shape, jnp.float32)
  params = {
      "fc1": {"kernel": normal((dim, hidden), dim**-0.5), "bias": normal((hidden,), 0.1)},
      "fc2": {"kernel": normal((hidden, dim), hidden**-0.5), "bias": normal((dim,), 0.1)},
      "norm": {"scale": 1.0 + normal((dim,), 0.2), "bias": normal((dim,), 0.2)},
  }
  x = normal((batch, side, side, dim), 1.0).astype(dtype)
  return swinv2.mlp_half_reference(dim, hidden, dtype, jnp.float32), params, x


def kernel(reference, interpret: bool | None = None):
  return functools.partial(
      mlp_pallas.residual_mlp,
      reference=reference,
      epsilon=swinv2.LAYER_NORM_EPS,
      interpret=interpret,
  )


def check(interpret: bool | None, only_last: bool = False) -> bool:
  """Prints each stage's fp32 and bf16 errors; False if any is over its bound."""
  passed = True
  for side, dim, _ in stages()[-1:] if only_last else stages():
    results = {}
    for dtype in (jnp.float32, jnp.bfloat16):
      reference, params, x = half_block(side, dim, CHECK_BATCH, dtype)
      with jax.default_matmul_precision("highest"):
        results[dtype] = (
            jax.jit(kernel(reference, interpret))(x, params),
            jax.jit(reference)(x, params),
        )
    exact = results[jnp.float32][1]
    fp32 = bench.relative_max_error(results[jnp.float32][0], exact)
    bf16, xla_bf16 = (bench.relative_l2_error(r, exact) for r in results[jnp.bfloat16])
    ok = fp32 < bench.FP32_BOUND and bf16 < bench.BF16_BOUND
    passed &= ok
    print(
        f"  C={dim:4d}: fp32 max error {fp32:.1e} (bound {bench.FP32_BOUND:.0e}); bf16 "
        f"{bf16:.1e}, XLA's bf16 {xla_bf16:.1e} (bound {bench.BF16_BOUND:.1e})"
        + ("" if ok else "  FAILED"),
        flush=True,
    )
  return passed


def time_stages(args) -> None:
  totals = {"xla": 0.0, "kernel": 0.0}
  for side, dim, depth in stages():
    reference, params, x = half_block(side, dim, args.batch, jnp.bfloat16)
    ms = {
        "xla": bench.median_ms(reference, (x, params), args),
        "kernel": bench.median_ms(kernel(reference), (x, params), args),
    }
    for path in totals:
      totals[path] += depth * ms[path]
    print(
        f"  {side:3d}² × C={dim:4d} ({depth} blocks): XLA {ms['xla']:.3f} ms, kernel "
        f"{ms['kernel']:.3f} ms, XLA ÷ kernel {ms['xla'] / ms['kernel']:.2f}×",
        flush=True,
    )
  print(
      f"  all blocks: XLA {totals['xla']:.3f} ms, kernel {totals['kernel']:.3f} ms, "
      f"XLA ÷ kernel {totals['xla'] / totals['kernel']:.2f}×"
  )


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--iters", type=int, default=20)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--warmup", type=int, default=3)
  args = parser.parse_args()
  print(
      f"{VARIANT} MLP half-blocks at {bench.IMAGE_SIZE}², batch {args.batch}; JAX "
      f"{jax.__version__}, {jax.devices()[0].device_kind}",
      flush=True,
  )
  if jax.default_backend() != "gpu":
    print("No GPU: nothing to time. Checking the interpreted kernel at stage 3's shapes.")
    return 0 if check(interpret=True, only_last=True) else 1
  print(f"check against XLA, batch {CHECK_BATCH}:", flush=True)
  passed = check(interpret=None)
  print(f"timings, bf16, batch {args.batch}:", flush=True)
  time_stages(args)
  return 0 if passed else 1


if __name__ == "__main__":
  sys.exit(main())

"""Where a jaxvqa backbone step spends its GPU time: kernels by name and by kind, from a trace.

    python benchmarks/kernel_profile.py [--work infer|train] [--batch 64] [--attention auto]

Builds the same program as `throughput.py`'s jax rows (SwinV2-T window 8, 256², bf16), compiles
and warms it up, records --steps steps under `jax.profiler.trace`, then reads the trace back with
`jax.profiler.ProfileData` (no TensorBoard needed) and prints per step: the GPU's busy time, the
time by kernel kind (matmul, attention, convolution, fused elementwise/reduction, copy, other),
and the --top kernels by total time with their launch counts. The trace directory is kept
(--trace-dir) for TensorBoard/XProf.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import tempfile
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput  # noqa: E402  (the rows' builders; this file lives beside it)

from jaxvqa.models import swinv2  # noqa: E402

KINDS = (  # first match wins; names as CUDA libraries and XLA give them
    ("fused attention", re.compile(r"cudnn|fmha|flash|sdpa", re.I)),
    ("matmul", re.compile(r"gemm|cutlass|xmma|nvjet|cublas|wgmma|triton_gemm|dot", re.I)),
    ("convolution", re.compile(r"conv|implicit", re.I)),
    ("copy / transpose", re.compile(r"memcpy|memset|copy|transpose", re.I)),
    ("reduction", re.compile(r"reduce|reduction|row_|softmax", re.I)),
    ("elementwise fusion", re.compile(r"loop_|fusion|input_|kernel", re.I)),
)


def kind_of(kernel: str) -> str:
  return next((kind for kind, pattern in KINDS if pattern.search(kernel)), "other")


def gpu_kernel_times(trace_dir: str) -> dict[str, list[float]]:
  """{kernel name: [durations in ms]} over every GPU stream of the trace."""
  from jax.profiler import ProfileData

  files = sorted(Path(trace_dir).rglob("*.xplane.pb"))
  if not files:
    raise FileNotFoundError(f"no *.xplane.pb under {trace_dir}: the profiler wrote nothing")
  kernels: dict[str, list[float]] = collections.defaultdict(list)
  for plane in ProfileData.from_file(str(files[-1])).planes:
    if not plane.name.startswith("/device:GPU"):
      continue
    for line in plane.lines:
      if not line.name.startswith("Stream"):  # "XLA Modules"/"XLA Ops" repeat the same time
        continue
      for event in line.events:
        kernels[event.name].append(event.duration_ns / 1e6)
  if not kernels:
    raise RuntimeError("the trace holds no GPU kernels (is this a GPU backend with CUPTI?)")
  return kernels


def report(kernels: dict[str, list[float]], steps: int, top: int) -> str:
  total = sum(sum(times) for times in kernels.values())
  by_kind: dict[str, float] = collections.Counter()
  for name, times in kernels.items():
    by_kind[kind_of(name)] += sum(times)
  lines = [
      f"GPU busy per step: {total / steps:.3f} ms ({sum(map(len, kernels.values())) // steps} "
      "kernel launches)",
      "",
      f"{'kind':<24}{'ms/step':>10}{'share':>8}",
  ]
  for kind, ms in sorted(by_kind.items(), key=lambda item: -item[1]):
    lines.append(f"{kind:<24}{ms / steps:>10.3f}{ms / total:>8.1%}")
  lines += ["", f"{'ms/step':>9}{'share':>7}{'calls':>7}  kernel"]
  ranked = sorted(kernels.items(), key=lambda item: -sum(item[1]))[:top]
  for name, times in ranked:
    lines.append(
        f"{sum(times) / steps:>9.3f}{sum(times) / total:>7.1%}{len(times) // steps:>7}  "
        f"{name[:110]}"
    )
  return "\n".join(lines)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--work", choices=("infer", "train"), default="infer")
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--top", type=int, default=25)
  parser.add_argument("--trace-dir", default="")
  parser.add_argument(
      "--attention", choices=swinv2.ATTENTION_IMPLS, default="auto", help="SwinV2.attention_impl"
  )
  args = parser.parse_args(argv)

  sizes = throughput.Sizes.full(args.batch).with_attention(args.attention)
  model, params = throughput.jax_backbone(sizes)
  images = throughput.jax_random_images(sizes)
  if args.work == "infer":
    forward = jax.jit(lambda params, images: model.apply({"params": params}, images).pooled)
    step = lambda i: forward(params, images[i % len(images)])
  else:
    state, train_step = throughput.jax_backbone_train_step(model, params)

    def step(i):
      nonlocal state
      state, loss = train_step(state, images[i % len(images)])
      return loss

  jax.block_until_ready([step(i) for i in range(3)])  # compile and warm up, untraced
  trace_dir = args.trace_dir or tempfile.mkdtemp(prefix="jaxvqa-trace-")
  with jax.profiler.trace(trace_dir):
    jax.block_until_ready([step(i) for i in range(args.steps)])
  print(
      f"{args.work} [{args.attention}], batch {args.batch}, {jax.devices()[0].device_kind}; "
      f"trace in {trace_dir}"
  )
  print(report(gpu_kernel_times(trace_dir), args.steps, args.top))


if __name__ == "__main__":
  main()

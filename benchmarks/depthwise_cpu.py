r"""EfficientNet-Lite0's depthwise convolutions on the CPU: XLA's grouped convolution against the
same sum written out (`jaxvqa.models.efficientnet.depthwise_conv`, what DepthwiseConv runs on
CPU), at every depthwise layer's shape for a batch of crops, forward and forward + backward.

  python benchmarks/depthwise_cpu.py [--batch 48] [--size 128] [--repeats 3]

Prints ms per layer for each path and grouped ÷ written-out over the whole network's depthwise
layers. The two are checked equal first (fp32, 1e-4).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxvqa.models import efficientnet


def depthwise_layers(size: int) -> list[tuple[int, int, int, int]]:
  """(input side, channels, kernel, stride) of each depthwise layer of Lite0 for size² input."""
  side = -(-size // 2)  # the stem strides by 2
  channels = efficientnet.scale_width(32, 1.0)
  layers = []
  for group in efficientnet.scaled_groups(*efficientnet.LITE_COEFFICIENTS["lite0"]):
    for repeat in range(group.repeats):
      stride = group.stride if repeat == 0 else 1
      expanded = channels * group.expand_ratio
      layers.append((side, expanded, group.kernel_size, stride))
      side, channels = -(-side // stride), group.out_channels
  return layers


def time_ms(fn, *args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))
  start = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(fn(*args))
  return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=48, help="crops per call (48: 12 videos × 4)")
  parser.add_argument("--size", type=int, default=128, help="crop side in pixels")
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  print(f"backend {jax.default_backend()}, {args.batch} crops of {args.size} px")
  print("side  channels  k  stride | grouped fwd  written fwd | grouped f+b  written f+b (ms)")
  totals = np.zeros(4)
  rng = np.random.default_rng(0)
  for side, channels, kernel_size, stride in depthwise_layers(args.size):
    x = jnp.asarray(rng.normal(size=(args.batch, side, side, channels)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(kernel_size, kernel_size, 1, channels)), jnp.float32)
    row = []
    outputs = []
    for written_out in (False, True):
      forward = jax.jit(
          lambda x, k, w=written_out: efficientnet.depthwise_conv(x, k, stride, written_out=w)
      )
      outputs.append(forward(x, kernel))
      row.append(time_ms(forward, x, kernel, repeats=args.repeats))
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-4, atol=1e-4)
    for written_out in (False, True):
      both = jax.jit(
          jax.grad(
              lambda x, k, w=written_out: jnp.sum(
                  efficientnet.depthwise_conv(x, k, stride, written_out=w) ** 2
              ),
              (0, 1),
          )
      )
      row.append(time_ms(both, x, kernel, repeats=args.repeats))
    totals += row
    print(
        f"{side:4d}  {channels:8d}  {kernel_size}  {stride:6d} | {row[0]:11.1f}  {row[1]:11.1f} |"
        f" {row[2]:11.1f}  {row[3]:11.1f}"
    )
  print(
      f"all depthwise layers: forward {totals[0]:.0f} ms grouped, {totals[1]:.0f} ms written out"
      f" (grouped ÷ written {totals[0] / totals[1]:.1f}); forward + backward {totals[2]:.0f} ms,"
      f" {totals[3]:.0f} ms ({totals[2] / totals[3]:.1f})"
  )


if __name__ == "__main__":
  main()

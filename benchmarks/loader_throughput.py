"""Loader throughput: videos/s of the Grain training loader with 0, 2 and all workers.

    python benchmarks/loader_throughput.py [--workdir /tmp/jaxvqa_loader_bench] [--steps 20]

Builds a compressed set once in --workdir (demo sources -> make-dataset -> TFDS ArrayRecord),
then times `pipeline.train_loader` (group sampler, decode in workers) against the reference
in the same run: a plain Python loop calling `video.load_clip` on the same encodes, one after
another, with no Grain. Prints videos/s and the ratio to the reference.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from jaxvqa.data import builders, compress, pipeline, sources, video


def build_set(workdir: Path, size: tuple[int, int], num_frames: int, num_sources: int):
  clips = sources.build_demo_sources(
      workdir / "sources", size=size, num_frames=num_frames, max_sources=num_sources
  )
  out = workdir / "made"
  if not (out / "manifest.jsonl").is_file():
    compress.make_dataset(
        clips, out, ladder_kbps=[100, 300, 1000, 3000], jobs=os.cpu_count(), progress=False
    )
  return builders.prepare(
      "compressed",
      out,
      workdir / "tfds",
      train_fraction=1.0,
      validation_fraction=0.0,
      test_fraction=0.0,
  )


def time_reference(data_source, indices, frames: pipeline.FrameOptions) -> float:
  start = time.perf_counter()
  for position, index in enumerate(indices):
    video.load_clip(
        data_source[int(index)]["video"],
        num_frames=frames.num_frames,
        size=frames.size,
        train=True,
        rng=np.random.default_rng(position),
        mode=frames.mode,
        num_threads=1,
    )
  return len(indices) / (time.perf_counter() - start)


def time_loader(data_source, sampler, frames, steps: int, workers: int) -> float:
  loader = iter(
      pipeline.train_loader(
          data_source,
          sampler,
          frames,
          seed=0,
          num_steps=steps + 1,
          num_workers=workers,
          read_threads=1 if workers else 2,
      )
  )
  next(loader)  # worker start-up and the first batch are not throughput
  start = time.perf_counter()
  count = sum(batch["mask"].sum() for batch in loader)
  return count / (time.perf_counter() - start)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", type=Path, default=Path("/tmp/jaxvqa_loader_bench"))
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--sources", type=int, default=6)
  parser.add_argument("--width", type=int, default=640)
  parser.add_argument("--height", type=int, default=360)
  parser.add_argument("--source-frames", type=int, default=64)
  parser.add_argument("--num-frames", type=int, default=8)
  parser.add_argument("--size", type=int, default=256)
  parser.add_argument("--mode", default="resize_crop", choices=video.MODES)
  args = parser.parse_args()

  builder = build_set(args.workdir, (args.width, args.height), args.source_frames, args.sources)
  data_source = builder.as_data_source("train")
  table = pipeline.read_example_table(data_source)
  sampler = pipeline.GroupBatchSampler(
      table.groups, table.sources, groups_per_batch=4, videos_per_group=2, seed=0
  )
  frames = pipeline.FrameOptions(num_frames=args.num_frames, size=args.size, mode=args.mode)
  print(
      f"set: {len(data_source)} encodes of {args.width}x{args.height}, {args.source_frames} "
      f"frames; clips T={args.num_frames} at {args.size}px ({args.mode}); batch 8"
  )

  indices = np.concatenate([sampler.batch_indices(step) for step in range(args.steps)])
  reference = time_reference(data_source, indices, frames)
  print(f"reference (load_clip loop, no Grain): {reference:8.1f} videos/s")
  for workers in sorted({0, 2, os.cpu_count() or 1}):
    rate = time_loader(data_source, sampler, frames, args.steps, workers)
    print(
        f"grain loader, {workers:2d} workers:        {rate:8.1f} videos/s  "
        f"({rate / reference:.2f}x reference)"
    )


if __name__ == "__main__":
  main()

"""make-dataset wall time: the Beam pipeline against the thread pool, on 1 worker and on all cores.

    python benchmarks/make_dataset_beam.py [--sources 6] [--width 320 --height 180 --frames 24]
        [--ladder 100k,300k,900k] [--modes multi_threading,multi_processing]

Makes --sources real clips (cut from the shipped bikes / bigbuckbunny clips), then makes the same
VMAF-labelled set from them four ways, each into a fresh directory: today's thread pool
(`compress.make_dataset`, --jobs 1 and all cores) and the Beam pipeline on the local runner
(`jaxvqa.beam.make_dataset`, 1 worker and one per core, for each --modes running mode). It prints
the wall times, the all-cores speed-up of each path, Beam's time over the pool's at each worker
count, and checks that every run wrote the same rows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import media  # noqa: E402  (tests/media.py: real clips from the packages' media)

from jaxvqa.beam import make_dataset as beam_make_dataset  # noqa: E402
from jaxvqa.beam import runners  # noqa: E402
from jaxvqa.data import compress, ladder  # noqa: E402


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--sources", type=int, default=6)
  parser.add_argument("--width", type=int, default=320)
  parser.add_argument("--height", type=int, default=180)
  parser.add_argument("--frames", type=int, default=24)
  parser.add_argument("--ladder", default="100k,300k,900k")
  parser.add_argument(
      "--modes",
      default="multi_threading,multi_processing",
      help="Beam local running modes to time (direct_running_mode)",
  )
  parser.add_argument("--workdir", type=Path, default=None)
  args = parser.parse_args()
  root = args.workdir or Path(tempfile.mkdtemp(prefix="jaxvqa_beam_bench_"))
  sources = root / "sources"
  for k in range(args.sources):
    media.make_clip(
        sources / f"clip{k}.mkv",
        source=("bikes", "bigbuckbunny")[k % 2],
        size=(args.width, args.height),
        frames=args.frames,
        start_frame=20 * k,
        codec="ffv1",
    )
  rates = ladder.parse_ladder(args.ladder)
  cores = os.cpu_count() or 1
  encodes = args.sources * len(rates)
  print(
      f"{args.sources} sources of {args.width}x{args.height}, {args.frames} frames; ladder "
      f"{args.ladder} (libx264): {encodes} encodes; {cores} cores"
  )

  # Warm-up (page cache of ffmpeg and the sources, Beam's imports), so no timed run pays it.
  compress.make_dataset(sources, root / "warm-up", rates[:1], progress=False)
  beam_make_dataset.make_dataset(
      sources, root / "warm-up", rates[:1], runner=runners.choose(None, [], cores)
  )
  runs = {}

  def timed(name: str, make) -> None:
    out = root / name.replace(" ", "_")
    shutil.rmtree(out, ignore_errors=True)
    started = time.monotonic()
    result = make(out)
    runs[name] = (time.monotonic() - started, result.rows)
    assert not result.failures and result.made == encodes, result.summary()
    print(
        f"  {name:<40} {runs[name][0]:7.2f} s  ({encodes / runs[name][0]:.2f} encodes/s)",
        flush=True,
    )

  for workers in (1, cores):
    timed(
        f"thread pool, {workers} jobs",
        lambda out, w=workers: compress.make_dataset(sources, out, rates, jobs=w, progress=False),
    )
    for mode in args.modes.split(","):
      timed(
          f"beam {mode}, {workers} workers",
          lambda out, w=workers, m=mode: beam_make_dataset.make_dataset(
              sources, out, rates, runner=runners.choose(None, [f"--direct_running_mode={m}"], w)
          ),
      )
  reference = runs["thread pool, 1 jobs"][1]
  assert all(rows == reference for _, rows in runs.values()), "the runs wrote different rows"
  print("every run wrote the same rows")

  def seconds(name):
    return runs[name][0]

  print(f"speed-up, all {cores} cores over 1:")
  print(
      f"  thread pool: {seconds('thread pool, 1 jobs') / seconds(f'thread pool, {cores} jobs'):.2f}x"
  )
  for mode in args.modes.split(","):
    print(
        f"  beam {mode}: "
        f"{seconds(f'beam {mode}, 1 workers') / seconds(f'beam {mode}, {cores} workers'):.2f}x"
    )
  print("beam time / thread-pool time (above 1: Beam slower):")
  for workers in (1, cores):
    for mode in args.modes.split(","):
      print(
          f"  {mode}, {workers} workers: "
          f"{seconds(f'beam {mode}, {workers} workers') / seconds(f'thread pool, {workers} jobs'):.2f}"
      )
  if args.workdir is None:
    shutil.rmtree(root)


if __name__ == "__main__":
  main()

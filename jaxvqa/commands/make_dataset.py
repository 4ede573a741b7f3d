"""`jaxvqa make-dataset --sources DIR --out DIR`: encode sources along a bitrate (and resolution)
ladder and VMAF-label each encode (the work is `jaxvqa.data.compress`; with `--beam` or
`--runner` it runs as the Apache Beam pipeline of `jaxvqa.beam.make_dataset`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from jaxvqa.data import encoding
from jaxvqa.data import ladder
from jaxvqa.scoring.names import printable_name


def add_subcommand(subparsers) -> None:
  """Registers `jaxvqa make-dataset`."""
  parser = subparsers.add_parser(
      "make-dataset",
      help="encode sources along a bitrate (and resolution) ladder and VMAF-label each encode",
      description="The paper's training data: each source along a streaming ladder, "
      "VMAF-labelled. Writes OUT/manifest.jsonl; resumable.",
      epilog="Beam's own pipeline options go after '--': jaxvqa make-dataset --sources S --out O "
      "--runner FlinkRunner -- --flink_master=HOST:8081 --environment_type=LOOPBACK "
      "(docs/BEAM.md)",
  )
  parser.add_argument(
      "--sources", required=True, type=Path, help="directory of pristine source videos"
  )
  parser.add_argument("--out", required=True, type=Path, help="output directory")
  parser.add_argument(
      "--ladder",
      default=ladder.DEFAULT_LADDER,
      help=f"target bitrates, kb/s with optional k/M (default {ladder.DEFAULT_LADDER})",
  )
  parser.add_argument(
      "--scales",
      default=ladder.DEFAULT_SCALES,
      help="resolution factors of the ladder in (0, 1], e.g. 1,0.75,0.5: each "
      "encode is downscaled (lanczos), encoded and upscaled back (bicubic) "
      f"for VMAF (default {ladder.DEFAULT_SCALES})",
  )
  parser.add_argument(
      "--codec",
      default="libx264",
      help=f"comma-separated encoders from {sorted(encoding.CODECS)} (default libx264)",
  )
  parser.add_argument(
      "--jobs",
      type=int,
      default=None,
      help="parallel ffmpeg processes, or local Beam workers (default: all "
      f"cores, {os.cpu_count()} here)",
  )
  parser.add_argument(
      "--max-frames", type=int, default=None, help="cut each source to its first N frames"
  )
  parser.add_argument("--scale", default=None, help="mezzanine size WIDTHxHEIGHT, e.g. 640x360")
  parser.add_argument(
      "--beam",
      action="store_true",
      help="run as an Apache Beam pipeline (default runner: local, --jobs "
      "workers); needs the beam extra",
  )
  parser.add_argument(
      "--runner",
      default=None,
      help="run as a Beam pipeline on this runner (implies --beam): DirectRunner, "
      "PrismRunner, FlinkRunner, SparkRunner, DataflowRunner, ...",
  )
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")
  parser.add_argument(
      "beam_args", nargs="*", metavar="-- BEAM_OPTION", help="Beam pipeline options, after '--'"
  )
  parser.set_defaults(run=run)


def _error(message: str) -> None:
  print(f"jaxvqa make-dataset: {message}", file=sys.stderr)


def _first_names(paths: list[Path], shown: int = 5) -> str:
  names = ", ".join(printable_name(path.name) for path in paths[:shown])
  return f"{names}, ..." if len(paths) > shown else names


def run(args: argparse.Namespace) -> int:
  """`jaxvqa make-dataset`: 0 when everything was made, 1 when anything failed, 2 on bad input."""
  from jaxvqa.data import compress, make_steps, manifest

  through_beam = args.beam or args.runner is not None
  try:
    rates = ladder.parse_ladder(args.ladder)
    codecs = encoding.parse_codecs(args.codec)
    scales = ladder.parse_scales(args.scales)
    scale = ladder.parse_scale(args.scale) if args.scale else None
    if args.max_frames is not None and args.max_frames < 1:
      raise ValueError(f"--max-frames must be ≥ 1, got {args.max_frames}")
    if args.jobs is not None and args.jobs < 1:
      raise ValueError(f"--jobs must be ≥ 1, got {args.jobs}")
    if args.beam_args and not through_beam:
      raise ValueError(f"Beam options {args.beam_args} given without --beam or --runner")
    if args.out.exists() and not args.out.is_dir():
      raise ValueError(
          f"--out {args.out} is a file, not a directory: name a new or existing directory"
      )
    found = make_steps.find_sources(args.sources)
  except (ValueError, FileNotFoundError) as error:
    _error(str(error))
    return 2
  originals = found.videos
  if found.other_files:
    _error(
        f"ignoring {len(found.other_files)} files without a video extension "
        f"({_first_names(found.other_files)})"
    )
  if found.subdirectories:
    _error(
        f"not searching {len(found.subdirectories)} "
        f"{'subdirectory' if len(found.subdirectories) == 1 else 'subdirectories'} of "
        f"{printable_name(str(args.sources))} ({_first_names(found.subdirectories)}): sources are "
        "the video files directly in --sources; pass a subdirectory as --sources to use its videos"
    )
  if not originals:
    _error(f"no video files in {args.sources}")
    return 1
  settings = dict(max_frames=args.max_frames, scale=scale, scales=scales)
  if through_beam:
    try:
      from jaxvqa.beam import make_dataset as beam_make_dataset
      from jaxvqa.beam import runners
    except ImportError as error:
      _error(f"--beam needs Apache Beam ({error}): pip install -e '.[beam]'")
      return 2
    result = beam_make_dataset.make_dataset(
        originals,
        args.out,
        rates,
        codecs,
        runner=runners.choose(args.runner, args.beam_args, args.jobs),
        **settings,
    )
  else:
    try:
      result = compress.make_dataset(
          originals, args.out, rates, codecs, args.jobs, progress=not args.no_progress, **settings
      )
    except KeyboardInterrupt:
      _error(
          "interrupted: queued encodes cancelled, finished ones kept; rerun the same command "
          "to make the rest"
      )
      return 130
  for failure in result.failures:
    _error(f"FAILED {printable_name(failure.name)}: {printable_name(failure.reason)}")
  _error(
      f"{len(result.rows)} encodes in {Path(args.out) / manifest.MANIFEST_NAME}, "
      f"{len(result.failures)} failures"
  )
  _error(result.summary())
  return 1 if result.failures else 0

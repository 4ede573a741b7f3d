"""`jaxvqa score-beam --workdir W --output PREFIX --input PATH... | --list FILE`: `jaxvqa score`
over a very large list of files as an Apache Beam pipeline, written as sharded JSON lines (the
work is `jaxvqa.beam.score`)."""

from __future__ import annotations

import argparse
import glob
import os
import sys
from pathlib import Path

from jaxvqa.commands import model_arguments
from jaxvqa.scoring.names import printable_name

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


def add_subcommand(subparsers) -> None:
  """Registers `jaxvqa score-beam`."""
  parser = subparsers.add_parser(
      "score-beam",
      help="score many video files with a trained model as a Beam pipeline",
      description="Scores video files as an Apache Beam pipeline (local by default; --runner "
      "for Flink, Spark, Dataflow) into OUTPUT-SSSSS-of-NNNNN.jsonl: one row per "
      "file with the fields of `jaxvqa score --format jsonl`. Exit status: 0 all "
      "scored, 1 some files could not be (their rows carry the error), 2 bad "
      "invocation.",
      epilog="Beam's own pipeline options go after '--': jaxvqa score-beam --workdir W --list "
      "files.txt --output gs://b/scores --runner DataflowRunner -- --project P "
      "--region R --temp_location gs://b/tmp (docs/BEAM.md)",
  )
  parser.add_argument(
      "--input",
      action="append",
      default=[],
      metavar="PATH",
      help="a video file, a directory (searched recursively) or a glob; "
      "repeatable; expanded here",
  )
  parser.add_argument(
      "--list",
      default=None,
      metavar="FILE",
      help="a text file of video paths, one per line, read by the pipeline "
      "(any Beam file system); for lists too long for one machine",
  )
  parser.add_argument(
      "--workdir",
      required=True,
      help="the run directory `python train.py` wrote (workers must see it)",
  )
  parser.add_argument(
      "--output",
      required=True,
      metavar="PREFIX",
      help="shards are PREFIX-SSSSS-of-NNNNN.jsonl (earlier shards of PREFIX are replaced)",
  )
  model_arguments.add_checkpoint(parser)
  parser.add_argument("--batch-size", type=int, default=8, help="files per model call (default 8)")
  parser.add_argument(
      "--num-shards", type=int, default=0, help="output shards (default: the runner chooses)"
  )
  parser.add_argument(
      "--jobs", type=int, default=None, help="local worker threads (default: all cores)"
  )
  parser.add_argument(
      "--runner",
      default=None,
      help="Beam runner: DirectRunner, PrismRunner, FlinkRunner, SparkRunner, "
      "DataflowRunner, ... (default: local)",
  )
  parser.add_argument(
      "beam_args", nargs="*", metavar="-- BEAM_OPTION", help="Beam pipeline options, after '--'"
  )
  parser.set_defaults(run=run)


def _error(message: str) -> None:
  print(f"jaxvqa score-beam: {message}", file=sys.stderr)


def expand_inputs(inputs: list[str]) -> list[str]:
  """Files as given, directories' video files (recursively, sorted), glob matches (sorted).

  A name that is none of these is kept: its row then says "file not found".
  """
  from jaxvqa.data.make_steps import VIDEO_EXTENSIONS

  paths = []
  for given in inputs:
    if os.path.isdir(given):
      paths += sorted(
          os.path.join(root, name)
          for root, _, names in os.walk(given)
          for name in names
          if Path(name).suffix.lower() in VIDEO_EXTENSIONS and not name.startswith(".")
      )
    elif glob.has_magic(given) and not os.path.exists(given):
      paths += sorted(glob.glob(given, recursive=True))
    else:
      paths.append(given)
  return list(dict.fromkeys(paths))


def run(args: argparse.Namespace) -> int:
  """`jaxvqa score-beam`: see the description for the exit status."""
  for flag in ("batch_size", "jobs"):
    value = getattr(args, flag)
    if value is not None and value < 1:
      _error(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
      return EXIT_USAGE
  if args.num_shards < 0:
    _error(f"--num-shards must be >= 0, got {args.num_shards}")
    return EXIT_USAGE
  paths = expand_inputs(args.input)
  if not paths and args.list is None:
    _error("nothing to score: give --input PATH (files, directories, globs) or --list FILE")
    return EXIT_USAGE
  if args.list is None and not any(os.path.exists(path) for path in paths):
    # As `jaxvqa score`: nothing there to score is a bad invocation, not a failed file.
    _error(f"no such file: {', '.join(printable_name(path) for path in paths)}")
    return EXIT_USAGE
  try:
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems

    from jaxvqa.beam import runners
    from jaxvqa.beam import score
  except ImportError as error:
    _error(f"needs Apache Beam ({error}): pip install -e '.[beam]'")
    return EXIT_USAGE
  old = [
      match.path for match in FileSystems.match([f"{args.output}-*-of-*.jsonl"])[0].metadata_list
  ]
  if old:
    FileSystems.delete(old)
    _error(f"removed {len(old)} shards of an earlier run of --output {args.output}")
  runner = runners.choose(args.runner, args.beam_args, args.jobs)
  with runner.pipeline() as pipeline:
    sources = [pipeline | "Inputs" >> beam.Create(paths)] if paths else []
    if args.list is not None:
      sources.append(
          pipeline
          | "List" >> beam.io.ReadFromText(args.list)
          | "NonEmpty" >> beam.Filter(lambda line: bool(line.strip()))
      )
    score.build(
        pipeline,
        sources | "AllPaths" >> beam.Flatten(),
        args.workdir,
        output=args.output,
        which=args.which,
        ema=not args.raw_weights,
        batch_size=args.batch_size,
        num_shards=args.num_shards,
    )
  rows = score.read_rows(args.output)
  failed = [row for row in rows if row["error"] is not None]
  for row in sorted(failed, key=lambda row: row["path"]):
    _error(f"{printable_name(row['path'])}: {printable_name(row['error'])}")
  _error(
      f"{len(rows) - len(failed)} scored, {len(failed)} could not be; rows in "
      f"{args.output}-*.jsonl"
  )
  return EXIT_SOME_FAILED if failed else EXIT_OK

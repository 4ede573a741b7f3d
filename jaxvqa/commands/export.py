"""`jaxvqa export --out DIR [--workdir W]`: the model as a `jax.export` program that scores with jax
alone (the work is `jaxvqa.serve.export`; the loader is `jaxvqa.serve.exported`).

Exit status: 0 written, 2 bad invocation (unknown platform, batch < 1, no model to load, an
unwritable DIR). The library is imported when the command runs, so `jaxvqa --help` stays quick.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxvqa.commands import model_arguments

EXIT_OK, EXIT_USAGE = 0, 2


def add_subcommand(subparsers) -> None:
  """Registers `jaxvqa export`."""
  parser = subparsers.add_parser(
      "export",
      help="write the scorer as a serialized jax.export program (StableHLO)",
      description=(
          "Writes DIR/scorer.jaxexport (the model and its calibration as one StableHLO "
          "program for each platform, taking prepared clips [B, T, S, S, 3]), "
          "DIR/scorer.json (input, frame preparation, model identity, calibration) and "
          "DIR/score_exported.py (a loader that needs jax and numpy only). "
          "See docs/EXPORT.md."
      ),
  )
  parser.add_argument(
      "--out",
      required=True,
      type=Path,
      metavar="DIR",
      help="directory to write (created; files of an earlier export replaced)",
  )
  model_arguments.add_workdir(parser)
  parser.add_argument(
      "--platforms",
      default="cpu,cuda",
      help="comma-separated jax.export platforms: cpu, cuda, rocm, tpu (default cpu,cuda)",
  )
  parser.add_argument(
      "--batch",
      type=int,
      default=None,
      metavar="N",
      help="export for exactly N clips per call (default: any batch, a symbolic dimension)",
  )
  parser.set_defaults(run=run)


def _error(message: str) -> None:
  print(f"jaxvqa export: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
  """Loads the model, exports it to `args.out` and prints one summary line."""
  from jaxvqa.serve import export

  try:
    platforms = export.parse_platforms(args.platforms)
  except ValueError as error:
    _error(f"--platforms: {error}")
    return EXIT_USAGE
  if args.batch is not None and args.batch < 1:
    _error(f"--batch must be ≥ 1, got {args.batch}")
    return EXIT_USAGE
  if args.out.exists() and not args.out.is_dir():
    _error(f"--out {args.out} is a file, not a directory")
    return EXIT_USAGE

  import jaxvqa
  from jaxvqa.train import checkpointing

  try:
    model = jaxvqa.load(args.workdir, num_devices=1)
  except (checkpointing.CheckpointError, FileNotFoundError, ValueError) as error:
    _error(str(error))
    return EXIT_USAGE
  try:
    result = export.export_scorer(model, args.out, platforms=platforms, batch=args.batch)
  except OSError as error:
    _error(f"cannot write {args.out}: {error}")
    return EXIT_USAGE
  print(f"jaxvqa export: {model.identity}: {result.summary()}")
  return EXIT_OK

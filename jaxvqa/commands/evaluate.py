"""`jaxvqa eval --workdir W [--split test] [--which best] [--config.data.f=v ...]`: eval.py as a
subcommand of the installed package (the work is `jaxvqa.evaluate.launch`).

Prints PLCC, SRCC, KRCC, RMSE and the count for the split and writes OUT/<split>_<which>_<weights>
.json and .png (docs/SCORING.md). `--config.data.manual_dir=DIR` and other data overrides evaluate
the run on another set. Exit status 2 with one line for a bad flag, field, workdir or checkpoint.
"""

from __future__ import annotations

import argparse

PROGRAM = "jaxvqa eval"


def add_subcommand(subparsers) -> None:
  """Registers `jaxvqa eval`; arguments argparse does not know are config overrides."""
  # Declarative (argparse), alike in shape to commands/train.py's, with its own help.
  parser = subparsers.add_parser(
      "eval",
      help="evaluate a trained run on a split (the same as eval.py)",
      description=(
          "Evaluates a train.py run's checkpoint on a split; --config.data.<field>=v overrides a "
          "data field of the run's saved config (e.g. another set's manual_dir)."
      ),
      allow_abbrev=False,
  )
  parser.add_argument("--workdir", required=True, help="run directory written by train.py")
  parser.add_argument("--split", default="test", help="train, validation or test (default: test)")
  parser.add_argument("--which", default="best", help="checkpoint: best or latest (default: best)")
  parser.add_argument("--raw-weights", action="store_true", help="raw weights instead of their EMA")
  parser.add_argument("--out", default=None, help="output directory (default: WORKDIR/eval)")
  parser.add_argument(
      "--batch-size", type=int, default=None, help="clips per device per call (default: as score)"
  )
  parser.set_defaults(run=run, takes_config_overrides=True)


def run(args: argparse.Namespace) -> int:
  from jaxvqa.evaluate import launch

  launch.run(
      args.workdir,
      split=args.split,
      which=args.which,
      ema=not args.raw_weights,
      out_dir=args.out,
      overrides=launch.config_overrides(args.config_overrides, PROGRAM),
      batch_size=args.batch_size,
      program=PROGRAM,
  )
  return 0

"""`jaxvqa train --config NAME|PATH[:ARG] [--workdir W] [--config.a.b=v ...]`: train.py as a
subcommand of the installed package (the work is `jaxvqa.train.launch`).

`--config demo` names a config shipped with the package (`configs/demo.py`), `demo:scratch` one of
its variants, and a path any config file; `--config.a.b=v` overrides a field as train.py's do.
Exit status as train.py's: 0 done, 2 one line for a bad config, field or checkpoint, 128 + the
signal number for a run a signal stopped (it saved first; rerun to resume).
"""

from __future__ import annotations

import argparse

PROGRAM = "jaxvqa train"


def add_subcommand(subparsers) -> None:
  """Registers `jaxvqa train`; arguments argparse does not know are config overrides."""
  parser = subparsers.add_parser(
      "train",
      help="train a model from a config (the same as train.py)",
      description=(
          "Trains what the config asks for: one run, a K-fold protocol or a distillation. A run "
          "that finds checkpoints in its workdir resumes from the newest. Any --config.a.b=v "
          "overrides the config's field a.b."
      ),
      allow_abbrev=False,
  )
  parser.add_argument(
      "--config",
      required=True,
      metavar="NAME|PATH[:ARG]",
      help="a shipped config's name (demo, demo:scratch, kfold, iqa_pretrain, ...) or a config file",
  )
  parser.add_argument("--workdir", default=None, help="run directory (default: config.workdir)")
  parser.set_defaults(run=run, takes_config_overrides=True)


def run(args: argparse.Namespace) -> int:
  from jaxvqa.train import launch

  config = launch.load_config(args.config, args.config_overrides, PROGRAM)
  launch.run(config, args.workdir or config.workdir, PROGRAM)
  return 0

"""The `jaxvqa` command: one subcommand per user job, each in its own module of `jaxvqa.commands`.

Each command module exposes `add_subcommand(subparsers)`, which registers its parser and sets
`run(args) -> int` as the handler, and imports the library only when it runs, so `jaxvqa --help`
does not wait for JAX. The list below is explicit on purpose: no registry by name.
"""

from __future__ import annotations

import argparse
import os
import sys

import jaxvqa
from jaxvqa.train import run_log


def build_parser() -> argparse.ArgumentParser:
  from jaxvqa.commands import (
      convert,
      doctor,
      evaluate,
      export,
      fetch_photos,
      make_corpus,
      make_dataset,
      make_iqa_set,
      score,
      score_beam,
      train,
  )

  parser = argparse.ArgumentParser(
      prog="jaxvqa", description="No-reference video quality assessment in JAX/Flax."
  )
  parser.add_argument("--version", action="version", version=f"%(prog)s {jaxvqa.__version__}")
  subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
  train.add_subcommand(subparsers)
  evaluate.add_subcommand(subparsers)
  convert.add_subcommand(subparsers)
  make_dataset.add_subcommand(subparsers)
  fetch_photos.add_subcommand(subparsers)
  make_corpus.add_subcommand(subparsers)
  make_iqa_set.add_subcommand(subparsers)
  score.add_subcommand(subparsers)
  score_beam.add_subcommand(subparsers)
  export.add_subcommand(subparsers)
  doctor.add_subcommand(subparsers)
  return parser


def main(argv: list[str] | None = None) -> int:
  parser = build_parser()
  args, unknown = parser.parse_known_args(argv)
  # `jaxvqa train` and `jaxvqa eval` take train.py's `--config.a.b=v`, which argparse cannot list:
  # they receive what it does not know; every other command refuses it as parse_args would.
  if unknown and not getattr(args, "takes_config_overrides", False):
    parser.error(f"unrecognized arguments: {' '.join(unknown)}")
  args.config_overrides = unknown
  return int(args.run(args) or 0)


# What a shell reports for a program that a closed pipe stopped (128 + SIGPIPE), as `yes | head`.
EXIT_CLOSED_PIPE = 141


def console_main() -> int:
  """The `jaxvqa` command: `main` in a process of its own (tests call `main` in theirs).

  A reader that stops early (`jaxvqa score ... | head -2`) ends the command quietly with 141, as
  it ends `cat` or `yes`: what was written is what the reader wanted.
  """
  run_log.ignore_closed_event_loop_callbacks()
  try:
    return main()
  except BrokenPipeError:
    # Python flushes stdout once more at exit; pointing it at /dev/null keeps that flush, which
    # would meet the same closed pipe, from printing a second error.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_CLOSED_PIPE


if __name__ == "__main__":
  sys.exit(console_main())

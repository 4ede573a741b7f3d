"""The `jaxvqa` command: one subcommand per user job.

Each subcommand lives in the module that owns its concept and exposes
`add_subcommand(subparsers)`, which registers its parser and sets `run(args) -> int`
as the handler. The list below is explicit on purpose: no registry by name.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
  from jaxvqa import scoring
  from jaxvqa.data import compress
  from jaxvqa.models import convert

  parser = argparse.ArgumentParser(
      prog="jaxvqa",
      description="No-reference video quality assessment in JAX/Flax.")
  subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
  convert.add_subcommand(subparsers)
  compress.add_subcommand(subparsers)
  scoring.add_subcommand(subparsers)
  return parser


def main(argv: list[str] | None = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  return int(args.run(args) or 0)


if __name__ == "__main__":
  sys.exit(main())

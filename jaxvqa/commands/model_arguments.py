"""The options that pick a trained model, shared by `score`, `score-beam`, `doctor` and `export`."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_workdir(parser: argparse.ArgumentParser) -> None:
  """`--workdir DIR` (default None: the model shipped with jaxvqa)."""
  parser.add_argument(
      "--workdir",
      type=Path,
      default=None,
      help="the run directory `python train.py` wrote, or a shipped model's directory "
      "(default: the model shipped with jaxvqa)",
  )


def add_checkpoint(parser: argparse.ArgumentParser) -> None:
  """`--which best|latest` and `--raw-weights`: which saved weights of the run score."""
  parser.add_argument(
      "--which",
      choices=("best", "latest"),
      default="best",
      help="best (validation SRCC; carries the calibration) or latest checkpoint",
  )
  parser.add_argument(
      "--raw-weights", action="store_true", help="use the raw weights instead of their EMA"
  )

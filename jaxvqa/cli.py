"""The `jaxvqa` command: one subcommand per user job.

Each subcommand lives in the module that owns its concept and exposes
`add_subcommand(subparsers)`, which registers its parser and sets `run(args) -> int`
as the handler. The list below is explicit on purpose: no registry by name.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
  from jaxvqa import scoring
  from jaxvqa.commands import make_dataset, score_beam
  from jaxvqa.models import convert

  parser = argparse.ArgumentParser(
      prog="jaxvqa",
      description="No-reference video quality assessment in JAX/Flax.")
  subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
  convert.add_subcommand(subparsers)
  make_dataset.add_subcommand(subparsers)
  add_make_corpus(subparsers)
  scoring.add_subcommand(subparsers)
  score_beam.add_subcommand(subparsers)
  return parser


def add_make_corpus(subparsers) -> None:
  """Registers `jaxvqa make-corpus` (jaxvqa.data.corpus)."""
  parser = subparsers.add_parser(
      "make-corpus", help="write hundreds of distinct lossless source clips for make-dataset",
      description="Writes OUT/<family>--<nnnn>.mkv (lossless x264) and OUT/corpus.jsonl from "
      "shipped photographs and clips, your images and generated content; resumable.")
  parser.add_argument("--out", required=True, type=Path, help="output directory")
  parser.add_argument("--count", type=int, default=400, help="number of clips (default 400)")
  parser.add_argument("--width", type=int, default=384, help="frame width, even (default 384)")
  parser.add_argument("--height", type=int, default=216, help="frame height, even (default 216)")
  parser.add_argument("--frames", type=int, default=24, help="frames per clip (default 24)")
  parser.add_argument("--fps", type=float, default=24, help="frame rate (default 24)")
  parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
  parser.add_argument("--jobs", type=int, default=None,
                      help="worker processes (default: all cores)")
  parser.add_argument("--images", type=Path, action="append", default=[], metavar="DIR",
                      help="a directory of JPEG/PNG/WebP images to cut clips from; repeatable")
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")
  parser.set_defaults(run=run_make_corpus)


def run_make_corpus(args: argparse.Namespace) -> int:
  """`jaxvqa make-corpus`: 0 when every clip was made, 1 when some failed, 2 on bad input."""
  from jaxvqa.data import corpus
  if args.jobs is not None and args.jobs < 1:
    print(f"jaxvqa make-corpus: --jobs must be ≥ 1, got {args.jobs}", file=sys.stderr)
    return 2
  try:
    corpus.make_corpus(args.out, count=args.count, width=args.width, height=args.height,
                       num_frames=args.frames, fps=args.fps, seed=args.seed, jobs=args.jobs,
                       image_dirs=args.images, progress=not args.no_progress)
  except (ValueError, FileNotFoundError) as error:
    print(f"jaxvqa make-corpus: {error}", file=sys.stderr)
    return 2
  except corpus.CorpusError as error:
    for name, reason in sorted(error.failures.items()):
      print(f"jaxvqa make-corpus: FAILED {name}: {reason}", file=sys.stderr)
    return 1
  return 0


def main(argv: list[str] | None = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  return int(args.run(args) or 0)


if __name__ == "__main__":
  sys.exit(main())

"""`jaxvqa make-corpus --out DIR`: hundreds of distinct lossless source clips for make-dataset
(the work is `jaxvqa.data.corpus`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_subcommand(subparsers) -> None:
  """Registers `jaxvqa make-corpus`."""
  parser = subparsers.add_parser(
      "make-corpus",
      help="write hundreds of distinct lossless source clips for make-dataset",
      description="Writes OUT/<family>--<nnnn>.mkv (lossless x264) and OUT/corpus.jsonl from "
      "shipped photographs and clips, your images, photo sets from `jaxvqa fetch-photos` and "
      "generated content; resumable.",
  )
  parser.add_argument("--out", required=True, type=Path, help="output directory")
  parser.add_argument("--count", type=int, default=400, help="number of clips (default 400)")
  parser.add_argument("--width", type=int, default=384, help="frame width, even (default 384)")
  parser.add_argument("--height", type=int, default=216, help="frame height, even (default 216)")
  parser.add_argument("--frames", type=int, default=24, help="frames per clip (default 24)")
  parser.add_argument("--fps", type=float, default=24, help="frame rate (default 24)")
  parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
  parser.add_argument(
      "--jobs", type=int, default=None, help="worker processes (default: all cores)"
  )
  parser.add_argument(
      "--images",
      type=Path,
      action="append",
      default=[],
      metavar="DIR",
      help="a directory of JPEG/PNG/WebP images to cut clips from; repeatable",
  )
  parser.add_argument(
      "--photos",
      type=Path,
      action="append",
      default=[],
      metavar="DIR",
      help="a photo set made by `jaxvqa fetch-photos --out DIR`: one family per photo; repeatable",
  )
  parser.add_argument(
      "--real-fraction",
      type=float,
      default=None,
      help="share of the clips cut from --photos (default 0.5); the other kinds share the rest",
  )
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")
  parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
  """`jaxvqa make-corpus`: 0 when every clip was made, 1 when some failed, 2 on bad input."""
  from jaxvqa.data import corpus

  if args.jobs is not None and args.jobs < 1:
    print(f"jaxvqa make-corpus: --jobs must be ≥ 1, got {args.jobs}", file=sys.stderr)
    return 2
  try:
    corpus.make_corpus(
        args.out,
        count=args.count,
        width=args.width,
        height=args.height,
        num_frames=args.frames,
        fps=args.fps,
        seed=args.seed,
        jobs=args.jobs,
        image_dirs=args.images,
        photo_dirs=args.photos,
        real_fraction=args.real_fraction,
        progress=not args.no_progress,
    )
  except (ValueError, FileNotFoundError) as error:
    print(f"jaxvqa make-corpus: {error}", file=sys.stderr)
    return 2
  except corpus.CorpusError as error:
    for name, reason in sorted(error.failures.items()):
      print(f"jaxvqa make-corpus: FAILED {name}: {reason}", file=sys.stderr)
    return 1
  return 0

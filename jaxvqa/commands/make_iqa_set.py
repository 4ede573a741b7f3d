"""`jaxvqa make-iqa-set --photos DIR --out OUT`: KADID-10K's recipe on our own photos, for IQA
pre-training (the work is `jaxvqa.data.iqa_set`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_subcommand(subparsers) -> None:
  """Registers `jaxvqa make-iqa-set`."""
  parser = subparsers.add_parser(
      "make-iqa-set",
      help="make an image-quality set: photos x synthetic distortions x levels, MS-SSIM labels",
      description="Writes a pristine reference of each photo (OUT/references/), each distortion "
      "of it at each level (OUT/images/), all PNG, and OUT/labels.csv (level and MS-SSIM "
      "against the reference for each image) for the distorted_photos TFDS builder "
      "(configs/iqa_made.py). Exit status: 0 done, 2 no usable photo or a bad setting.",
  )
  # Declarative (argparse), as make_corpus.py's --photos, with its own help.
  parser.add_argument(
      "--photos",
      type=Path,
      action="append",
      default=[],
      metavar="DIR",
      help="a `jaxvqa fetch-photos` set, or any directory of JPEG/PNG/WebP photos; repeatable",
  )
  parser.add_argument(
      "--package-photos",
      action="store_true",
      help="also use the colour photographs scikit-image ships",
  )
  parser.add_argument("--out", required=True, type=Path, help="output directory")
  parser.add_argument(
      "--size", type=int, default=384, help="short side of each reference in pixels (default 384)"
  )
  parser.add_argument("--levels", type=int, default=5, help="levels of each distortion (default 5)")
  parser.add_argument(
      "--distortions",
      default=None,
      metavar="A,B,...",
      help="distortions to apply, comma-separated (default: all)",
  )
  parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
  parser.add_argument(
      "--jobs", type=int, default=None, help="worker processes (default: all cores)"
  )
  parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
  """`jaxvqa make-iqa-set`: 0 when done, 2 when no photo is usable or a setting is wrong."""
  from jaxvqa.data import distortions, iqa_set

  names = (
      tuple(name.strip() for name in args.distortions.split(",") if name.strip())
      if args.distortions
      else tuple(distortions.DISTORTIONS)
  )
  settings = iqa_set.Settings(size=args.size, levels=args.levels, seed=args.seed, distortions=names)
  try:
    photo_paths = iqa_set.find_photos(args.photos, args.package_photos)
    iqa_set.make_iqa_set(photo_paths, args.out, settings, jobs=args.jobs)
  except (ValueError, FileNotFoundError) as error:
    print(f"jaxvqa make-iqa-set: {error}", file=sys.stderr)
    return 2
  return 0

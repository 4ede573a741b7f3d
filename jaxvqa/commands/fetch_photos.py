"""`jaxvqa fetch-photos --out DIR`: real photographs from Debian packages, with their licences, for
`jaxvqa make-corpus --photos DIR` (the work is `jaxvqa.data.photos`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_subcommand(subparsers) -> None:
  """Registers `jaxvqa fetch-photos`."""
  from jaxvqa.data import photos

  parser = subparsers.add_parser(
      "fetch-photos",
      help="collect real photographs from Debian packages for make-corpus --photos",
      description="Downloads Debian packages with apt-get (nothing is installed) or reads local "
      ".deb files, and writes their photographs to OUT/images/PACKAGE/, one record per photo "
      "(licence, size, sha256) to OUT/photos.jsonl and a licence summary to OUT/LICENSES.md. "
      "Rerunning skips packages already there. Exit status: 0 done, 2 a missing tool, package "
      "or file.",
  )
  parser.add_argument("--out", required=True, type=Path, help="output directory")
  parser.add_argument(
      "--packages",
      default=None,
      metavar="A,B,...",
      help="Debian packages to download, comma-separated (default: "
      f"{','.join(photos.DEFAULT_PACKAGES)}; none when --deb is given)",
  )
  parser.add_argument(
      "--deb",
      type=Path,
      action="append",
      default=[],
      metavar="FILE",
      help="a local .deb to read instead of downloading; repeatable",
  )
  parser.add_argument(
      "--max-side",
      type=int,
      default=photos.DEFAULT_MAX_SIDE,
      help="store each photo downscaled to at most this many pixels on its long side "
      f"(default {photos.DEFAULT_MAX_SIDE}; 1280 makes a set small enough to carry)",
  )
  parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
  """`jaxvqa fetch-photos`: 0 when done, 2 on a missing tool, package or file."""
  from jaxvqa.data import photos

  if args.packages is not None:
    packages = [name.strip() for name in args.packages.split(",") if name.strip()]
  else:
    packages = [] if args.deb else list(photos.DEFAULT_PACKAGES)
  try:
    photos.fetch_photos(args.out, packages=packages, debs=args.deb, max_side=args.max_side)
  except (ValueError, photos.PhotoFetchError) as error:
    print(f"jaxvqa fetch-photos: {error}", file=sys.stderr)
    return 2
  return 0

"""`jaxvqa doctor [--workdir W]`: checks the installation and that the model still separates a low
from a high bitrate (the work is `jaxvqa.serve.doctor`).

Prints one line per check ("ok", "warn" or "FAIL") and a verdict. Exit status: 0 healthy (warnings
allowed), 1 a check failed (no usable ffmpeg, no shipped model, a model that does not separate
bitrates), 2 bad invocation (an unusable --workdir or --margin). The library is imported when the
command runs, so `jaxvqa --help` stays quick.
"""

from __future__ import annotations

import argparse
import math
import sys

from jaxvqa.commands import model_arguments

EXIT_HEALTHY, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_subcommand(subparsers) -> None:
  """Registers `jaxvqa doctor`."""
  parser = subparsers.add_parser(
      "doctor",
      help="check the installation, and that the model tells a low from a high bitrate",
      description=(
          "Reports versions, JAX devices, ffmpeg (libx264, libvmaf) and decord, then "
          "encodes shipped content at a low and a high bitrate and fails unless the "
          "model scores every high-bitrate clip above its low-bitrate one by a margin "
          "(a collapsed model gives every clip the same score). Exit status: 0 healthy, "
          "1 a check failed, 2 bad invocation."
      ),
  )
  model_arguments.add_workdir(parser)
  parser.add_argument(
      "--margin",
      type=float,
      default=None,
      help="how far above the low-bitrate score the high one must be, in score "
      "units (default: 5%% of the calibration's label range, 0 for an "
      "uncalibrated model)",
  )
  parser.set_defaults(run=run)


def _print(line: str) -> None:
  print(line, flush=True)


def run(args: argparse.Namespace) -> int:
  """Runs every check, printing each line as it is known; see the module docstring."""
  if args.margin is not None and not (math.isfinite(args.margin) and args.margin >= 0):
    print(f"jaxvqa doctor: --margin must be a number ≥ 0, got {args.margin}", file=sys.stderr)
    return EXIT_USAGE
  if args.workdir is not None and not args.workdir.is_dir():
    print(f"jaxvqa doctor: --workdir {args.workdir} is not a directory", file=sys.stderr)
    return EXIT_USAGE

  import jaxvqa
  from jaxvqa.serve import doctor
  from jaxvqa.train import checkpointing
  from jaxvqa.data import encoding, ffmpeg

  checks = doctor.installation_checks()
  for check in checks:
    _print(check.line())
  if any(check.ok is False for check in checks):
    return _verdict(checks + [doctor.Check("model", False, "not checked: fix the lines above")])

  try:
    model = jaxvqa.load(args.workdir)
  except (checkpointing.CheckpointError, FileNotFoundError, ValueError) as error:
    if args.workdir is not None:
      print(f"jaxvqa doctor: {error}", file=sys.stderr)
      return EXIT_USAGE
    failure = doctor.Check("model", False, str(error))
    _print(failure.line())
    return _verdict(checks + [failure])
  _print("...   model: encoding shipped content at a low and a high bitrate, then scoring it")
  try:
    model_checks = doctor.check_model(model, margin=args.margin)
  except (ffmpeg.FfmpegError, encoding.EncodeCheckError, OSError) as error:
    model_checks = [doctor.Check("clips", False, f"could not make the test clips: {error}")]
  for check in model_checks:
    _print(check.line())
  return _verdict(checks + model_checks)


def _verdict(checks) -> int:
  failed = [check.name for check in checks if check.ok is False]
  if failed:
    _print(f"jaxvqa doctor: FAILED ({', '.join(failed)})")
    return EXIT_FAILED
  warned = [check.name for check in checks if check.ok is None]
  _print("jaxvqa doctor: healthy" + (f" (warnings: {', '.join(warned)})" if warned else ""))
  return EXIT_HEALTHY

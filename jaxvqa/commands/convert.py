"""`jaxvqa convert-weights FILE --out DIR` (alias `convert-timm`): a PyTorch SwinV2 checkpoint
becomes Flax params (the conversion is `jaxvqa.models.convert`, the files
`jaxvqa.models.checkpoint_files`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Mapping

from jaxvqa.models import checkpoint_files, convert
from jaxvqa.models.torch_keys import CheckpointError


def add_subcommand(subparsers) -> None:
  """Register `convert-weights FILE --out DIR [--window-size N]` (alias `convert-timm`)."""
  parser = subparsers.add_parser(
      "convert-weights",
      aliases=["convert-timm"],
      help="convert a PyTorch SwinV2 checkpoint (timm, Microsoft or HF) into Flax params",
      description=convert.__doc__.split("\n\n")[0],
  )
  parser.add_argument("file", type=Path, help=".safetensors, .bin, .pth or .pt checkpoint")
  parser.add_argument(
      "--out",
      type=Path,
      required=True,
      help="directory to write (must not hold converted weights yet)",
  )
  parser.add_argument(
      "--window-size",
      type=int,
      default=None,
      help="window size, when the checkpoint has no position buffers to read it "
      "from (HF and timm >= 0.9 checkpoints; a config.json beside an HF checkpoint "
      "is read automatically)",
  )
  parser.add_argument(
      "--pretrained-window-sizes",
      type=int,
      nargs="+",
      default=None,
      metavar="N",
      help="pretraining window of each stage, when the checkpoint has no position "
      "buffers and was fine-tuned at a new window (12 12 12 6 for "
      "*_window12to16_192to256); 0 means none",
  )
  parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
  """Convert `args.file` into `args.out`; prints the variant, parameter count and location."""
  state = checkpoint_files.load_checkpoint(args.file)
  config_window, config_pretrained = checkpoint_files.hf_config_windows(args.file)
  window_size = args.window_size if args.window_size is not None else config_window
  pretrained = (
      args.pretrained_window_sizes
      if args.pretrained_window_sizes is not None
      else config_pretrained
  )
  try:
    variables, model_kwargs = convert.convert_state_dict(
        state, window_size=window_size, pretrained_window_sizes=pretrained
    )
  except CheckpointError as e:
    raise SystemExit(f"jaxvqa convert-weights: {args.file}: {e}") from None
  out = checkpoint_files.save_converted(args.out, variables, model_kwargs)
  print(
      f"Converted {args.file} → SwinV2 {_describe(model_kwargs)}, "
      f"{convert.param_count(variables):,} parameters."
  )
  print(
      f"Wrote {out / checkpoint_files.PARAMS_DIR} (Orbax) and {out / checkpoint_files.MODEL_JSON}."
  )
  return 0


def _describe(model_kwargs: Mapping[str, Any]) -> str:
  """The VARIANTS name these kwargs match, else the kwargs themselves."""
  from jaxvqa.models.swinv2_presets import VARIANTS

  for name, fields in VARIANTS.items():
    if all(model_kwargs.get(k) == v for k, v in fields.items()):
      return f"{name} (patch {model_kwargs['patch_size']}, mlp ratio {model_kwargs['mlp_ratio']})"
  return ", ".join(f"{k}={v}" for k, v in model_kwargs.items())

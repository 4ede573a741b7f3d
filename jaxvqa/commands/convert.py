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
      help="window size, when nothing else tells it: read otherwise from the checkpoint's "
      "position buffers (Microsoft, timm 0.6), a config.json beside it (HF's window_size, "
      "timm's architecture) or a file named as timm or HF names the model",
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
  """Convert `args.file` into `args.out`; prints the variant, parameter count and location.

  Each of window_size and pretrained_window_sizes comes from its flag, else from an HF
  config.json beside the checkpoint, else (no window given either way) from the model that a timm
  config.json beside it or the file's own name names (timm >= 0.9 and HF files keep no position
  tables), else from the
  checkpoint's position tables (Microsoft, timm 0.6.x), which any other source must agree with.
  """
  state = checkpoint_files.load_checkpoint(args.file)
  config_window, config_pretrained = checkpoint_files.hf_config_windows(args.file)
  # A window given by hand or by an HF config.json says more than a file's name.
  told = args.window_size is not None or config_window is not None
  named = None if told else checkpoint_files.named_preset(args.file)
  sources = {
      "--window-size / --pretrained-window-sizes": (args.window_size, args.pretrained_window_sizes),
      str(args.file.parent / "config.json"): (config_window, config_pretrained),
  }
  if named is not None:
    preset, source = named
    sources[source] = (preset.backbone["window_size"], preset.backbone["pretrained_window_sizes"])
  window_size = next((w for w, _ in sources.values() if w is not None), None)
  pretrained = next((p for _, p in sources.values() if p is not None), None)
  given_by = " and ".join(
      source
      for source, (w, p) in sources.items()
      if (w is not None and w == window_size) or (p is not None and p == pretrained)
  )
  try:
    variables, model_kwargs = convert.convert_state_dict(
        state, window_size=window_size, pretrained_window_sizes=pretrained, given_by=given_by
    )
  except CheckpointError as e:
    raise SystemExit(f"jaxvqa convert-weights: {args.file}: {e}") from None
  if named is not None and named[1] in given_by:
    _check_named_architecture(args.file, named, model_kwargs)
  out = checkpoint_files.save_converted(args.out, variables, model_kwargs)
  print(
      f"Converted {args.file} → SwinV2 {_describe(model_kwargs)}, "
      f"{convert.param_count(variables):,} parameters."
  )
  print(
      f"Wrote {out / checkpoint_files.PARAMS_DIR} (Orbax) and {out / checkpoint_files.MODEL_JSON}."
  )
  return 0


def _check_named_architecture(file: Path, named, model_kwargs: Mapping[str, Any]) -> None:
  """Refuses a checkpoint whose weights are not the model its name says (the window read from
  the name would then be a guess)."""
  preset, source = named
  fields = ("embed_dim", "depths", "num_heads")
  found = {k: model_kwargs[k] for k in fields}
  expected = {k: preset.backbone[k] for k in fields}
  if found != expected:
    raise SystemExit(
        f"jaxvqa convert-weights: {file}: {source} names {preset.name} {expected}, but the "
        f"weights are {found}; pass --window-size (and --pretrained-window-sizes) for this file"
    )


def _describe(model_kwargs: Mapping[str, Any]) -> str:
  """The VARIANTS name these kwargs match, else the kwargs themselves."""
  from jaxvqa.models.swinv2_presets import VARIANTS

  for name, fields in VARIANTS.items():
    if all(model_kwargs.get(k) == v for k, v in fields.items()):
      return f"{name} (patch {model_kwargs['patch_size']}, mlp ratio {model_kwargs['mlp_ratio']})"
  return ", ".join(f"{k}={v}" for k, v in model_kwargs.items())

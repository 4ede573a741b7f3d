"""The files around checkpoint conversion: PyTorch checkpoints in, converted Flax weights out.

- `load_checkpoint`: a .safetensors, .bin, .pth or .pt file → flat {torch key: float32 array}
  (torch checkpoints are read weights-only; tensors under 'model' or 'state_dict' are found).
- `hf_config_windows`: the window sizes a SwinV2 config.json beside an HF checkpoint gives.
- `named_preset`: the `swinv2_presets` entry a timm config.json or the file's name names.
- `save_converted` / `load_converted`: a directory with `params/` (Orbax) and `model.json`
  (the SwinV2 kwargs), what `jaxvqa convert-weights` writes and `config.init.backbone` reads.

The conversion itself is `jaxvqa.models.convert`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from jaxvqa.models.torch_keys import CheckpointError

MODEL_JSON = "model.json"
PARAMS_DIR = "params"


def load_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
  """Flat {torch key: float32 array} from .safetensors, or .bin/.pth/.pt (torch, weights only).

  A torch checkpoint's tensors may sit under 'model' or 'state_dict' (Microsoft / Lightning).
  """
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"Checkpoint {path} does not exist or is not a file.")
  suffix = path.suffix.lower()
  if suffix == ".safetensors":
    state = _load_safetensors(path)
  elif suffix in (".bin", ".pth", ".pt"):
    state = _load_torch(path)
  else:
    raise CheckpointError(
        f"{path}: unknown checkpoint extension {suffix!r}; expected "
        ".safetensors, .bin, .pth or .pt."
    )
  return state


def _load_safetensors(path: Path) -> dict[str, np.ndarray]:
  from safetensors import safe_open

  try:
    import torch  # bf16/fp16 tensors are read exactly through torch when it is installed
  except ImportError:
    torch = None
  state = {}
  with safe_open(str(path), framework="pt" if torch is not None else "np") as f:
    for key in f.keys():
      tensor = f.get_tensor(key)
      state[key] = (
          tensor.float().numpy()
          if torch is not None and tensor.is_floating_point()
          else np.asarray(tensor)
      )
  return {k: _as_float32(v) for k, v in state.items()}


def _load_torch(path: Path) -> dict[str, np.ndarray]:
  try:
    import torch
  except ImportError as e:
    raise CheckpointError(
        f"{path}: reading a torch checkpoint needs PyTorch (pip install torch), "
        "or convert it to .safetensors first."
    ) from e
  obj = torch.load(str(path), map_location="cpu", weights_only=True)
  for container in ("model", "state_dict"):
    if isinstance(obj, Mapping) and container in obj and isinstance(obj[container], Mapping):
      obj = obj[container]
  if not isinstance(obj, Mapping):
    raise CheckpointError(
        f"{path}: expected a state dict (possibly under 'model' or "
        f"'state_dict'), found {type(obj).__name__}."
    )
  state = {}
  for key, value in obj.items():
    if not isinstance(value, torch.Tensor):
      raise CheckpointError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor.")
    state[key] = (value.float() if value.is_floating_point() else value).numpy()
  return {k: _as_float32(v) for k, v in state.items()}


def _as_float32(x: np.ndarray) -> np.ndarray:
  return x.astype(np.float32) if np.issubdtype(x.dtype, np.floating) else x


def hf_config_windows(checkpoint: Path) -> tuple[int | None, tuple[int, ...] | None]:
  """(window_size, pretrained_window_sizes) from a SwinV2 config.json beside the checkpoint."""
  config = _config_beside(checkpoint)
  if config.get("model_type") != "swinv2":
    return None, None
  pretrained = config.get("pretrained_window_sizes")
  return config.get("window_size"), tuple(pretrained) if pretrained is not None else None


def _config_beside(checkpoint: Path) -> dict:
  config_path = checkpoint.parent / "config.json"
  if not config_path.is_file():
    return {}
  config = json.loads(config_path.read_text())
  return config if isinstance(config, dict) else {}


def named_preset(checkpoint: Path) -> tuple[Any, str] | None:
  """(swinv2_presets.Preset, where its name was read) for a checkpoint that names its model:
  the "architecture" of a timm config.json beside it (timm's Hugging Face Hub layout), else the
  file's own name (timm's or HF's model name, e.g. swinv2_tiny_window16_256.safetensors).

  timm >= 0.9 and HF files keep no position buffers, so the window is not in their weights;
  their name is what tells it.
  """
  from jaxvqa.models import swinv2_presets

  architecture = _config_beside(checkpoint).get("architecture")
  if isinstance(architecture, str) and (found := swinv2_presets.find_preset(architecture)):
    return found, f"{checkpoint.parent / 'config.json'} (architecture {architecture!r})"
  if found := swinv2_presets.find_preset(checkpoint.name):
    return found, f"the file name {checkpoint.name!r}"
  return None


def save_converted(out_dir: str | Path, params: Mapping, model_kwargs: Mapping[str, Any]) -> Path:
  """Write `out_dir/params` (Orbax) and `out_dir/model.json` (SwinV2 kwargs). Returns out_dir."""
  import orbax.checkpoint as ocp

  out_dir = Path(out_dir).absolute()
  if (out_dir / PARAMS_DIR).exists() or (out_dir / MODEL_JSON).exists():
    raise FileExistsError(
        f"{out_dir} already holds converted weights; remove it or choose another "
        "--out directory."
    )
  out_dir.mkdir(parents=True, exist_ok=True)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(out_dir / PARAMS_DIR, dict(params))
  checkpointer.wait_until_finished()
  kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in model_kwargs.items()}
  (out_dir / MODEL_JSON).write_text(json.dumps(kwargs, indent=2) + "\n")
  return out_dir


# `config.init.*` values naming weights a package ships instead of a converted directory.
PACKAGE_BACKBONES = ("package:efficientnet_lite0",)


def load_backbone(spec: str | Path) -> tuple[dict, dict[str, Any]]:
  """(variables {'params': ...}, architecture kwargs) of a backbone start: a directory written by
  `save_converted`, or one of PACKAGE_BACKBONES (EfficientNet-Lite0's ImageNet weights from the
  `[pretrain]` extra's wheel, for config.model.backbone.name = "efficientnet_lite0")."""
  if str(spec).startswith("package:"):
    if str(spec) not in PACKAGE_BACKBONES:
      raise FileNotFoundError(f"{spec} is not a known package backbone; known: {PACKAGE_BACKBONES}")
    from jaxvqa.models import efficientnet_weights

    _, params = efficientnet_weights.lite0_backbone()
    return {"params": params}, {"name": "efficientnet_lite0"}
  return load_converted(spec)


def architecture_differences(saved: Mapping[str, Any], configured: Mapping[str, Any]) -> str:
  """The architecture fields a converted directory's model.json (`saved`) and config.model.backbone
  (`configured`) disagree on, each side's values, or "" when they agree on every shared field."""

  def as_given(value):  # model.json holds lists where the config holds tuples
    return tuple(value) if isinstance(value, (list, tuple)) else value

  differing = [
      key
      for key in saved
      if key in configured and as_given(saved[key]) != as_given(configured[key])
  ]

  def spell(fields):
    return ", ".join(f"{key}={as_given(fields[key])}" for key in differing)

  if not differing:
    return ""
  return f"its {MODEL_JSON} has {spell(saved)}; config.model.backbone has {spell(configured)}"


def load_converted(directory: str | Path) -> tuple[dict, dict[str, Any]]:
  """(variables {'params': ...}, SwinV2 kwargs) written by `save_converted`."""
  import orbax.checkpoint as ocp

  directory = Path(directory).absolute()
  for needed in (MODEL_JSON, PARAMS_DIR):
    if not (directory / needed).exists():
      raise FileNotFoundError(
          f"{directory} lacks {needed}; it is not a directory written by "
          "`jaxvqa convert-weights`."
      )
  kwargs = json.loads((directory / MODEL_JSON).read_text())
  kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
  params = ocp.StandardCheckpointer().restore(directory / PARAMS_DIR)
  return params, kwargs

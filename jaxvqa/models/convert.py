"""PyTorch SwinV2 checkpoints (HF transformers, timm 0.6.x / Microsoft, timm >= 0.9) → Flax params.

Layouts understood (a `module.` or HF `swinv2.` prefix is stripped first):
- HF `transformers`: `embeddings.*`, `encoder.layers.i.blocks.j.attention.self.{query,key,value}`,
  `encoder.layers.i.downsample` at the end of stages 0..n−2, `layernorm.*`, `classifier.*`.
- Microsoft / timm 0.6.x: `patch_embed.*`, `layers.i.blocks.j.attn.{qkv,q_bias,v_bias,...}`,
  `layers.i.downsample` at the END of stages 0..n−2, `norm.*`, `head.weight`.
- timm >= 0.9: as above but `layers.i.downsample` at the START of stages 1..n−1, `head.fc.*`.

Classification heads are dropped with a note. Buffers (relative_position_index,
relative_coords_table, attn_mask, k_bias) are recomputed by the model and never loaded; the
coords table, when present, tells the window size and the pretraining window of each stage.
Any other unknown key, or any parameter the model needs and the checkpoint lacks, is an error
naming the keys: there is no silent partial load.

Torch Linear (out, in) → Flax kernel (in, out); Conv (O, I, kh, kw) → (kh, kw, I, O).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

MODEL_JSON = "model.json"
PARAMS_DIR = "params"

_BUFFER_SUFFIXES = ("relative_position_index", "relative_coords_table", "attn_mask", "attn.k_bias")
_HEAD_PREFIXES = ("head.", "classifier.")
_STRIPPED_PREFIXES = ("module.", "swinv2.")


class CheckpointError(ValueError):
  """A checkpoint that cannot be converted; the message names the keys and what to do."""


# ----------------------------------------------------------------------------------------------
# Reading files.


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


# ----------------------------------------------------------------------------------------------
# Key mapping: every layout is renamed into one canonical torch naming (timm >= 0.9 names, with
# the downsample kept at the end of its stage as the Flax model has it), then moved into the tree.


def _strip_prefixes(key: str) -> str:
  for prefix in _STRIPPED_PREFIXES:
    if key.startswith(prefix):
      key = key[len(prefix) :]
  return key


def detect_layout(keys: list[str]) -> str:
  """'hf', 'timm_end_downsample' (Microsoft, timm 0.6.x) or 'timm_start_downsample' (timm 0.9+)."""
  if any(k.startswith(("embeddings.", "encoder.")) for k in keys):
    return "hf"
  stage_of_downsample = sorted(
      {int(m.group(1)) for k in keys if (m := re.match(r"layers\.(\d+)\.downsample\.", k))}
  )
  if stage_of_downsample:
    return "timm_end_downsample" if stage_of_downsample[0] == 0 else "timm_start_downsample"
  if any(k.startswith("layers.") for k in keys):
    # A one-stage model has no downsample; the head tells the timm generation if there is one.
    return "timm_start_downsample" if "head.fc.weight" in keys else "timm_end_downsample"
  raise CheckpointError(
      "Not a SwinV2 checkpoint: no 'embeddings.'/'encoder.' (HF) or 'layers.' "
      f"(timm/Microsoft) keys; first keys are {keys[:8]}."
  )


_HF_RENAMES = [
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^embeddings\.norm\.", "patch_embed.norm."),
    (r"^encoder\.layers\.", "layers."),
    (r"\.attention\.self\.continuous_position_bias_mlp\.", ".attn.cpb_mlp."),
    (r"\.attention\.self\.", ".attn."),
    (r"\.attention\.output\.dense\.", ".attn.proj."),
    (r"\.layernorm_before\.", ".norm1."),
    (r"\.layernorm_after\.", ".norm2."),
    (r"\.intermediate\.dense\.", ".mlp.fc1."),
    (r"\.output\.dense\.", ".mlp.fc2."),
    (r"^layernorm\.", "norm."),
]


def _canonical_key(key: str, layout: str) -> str:
  """A key of `layout` (prefixes stripped) in timm names, with merging at the end of its stage."""
  if layout == "hf":
    for pattern, replacement in _HF_RENAMES:
      key = re.sub(pattern, replacement, key)
  elif layout == "timm_start_downsample":
    # timm >= 0.9 keeps stage i's merging at the start of stage i+1; the Flax model at the end of i.
    key = re.sub(
        r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m.group(1)) - 1}.downsample.", key
    )
  return key


def _fuse_hf_qkv(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """HF's separate query/key/value (already renamed under `.attn.`) → qkv + q_bias/v_bias."""
  renamed = dict(state)
  suffix = "query.weight"
  for prefix in sorted({k[: -len(suffix)] for k in renamed if k.endswith(".attn." + suffix)}):
    parts = {}
    for name in ("query.weight", "key.weight", "value.weight"):
      if prefix + name not in renamed:
        raise CheckpointError(
            f"HF checkpoint lacks {_hf_name(prefix + name)!r} next to "
            f"{_hf_name(prefix + 'query.weight')!r}."
        )
      parts[name] = renamed.pop(prefix + name)
    renamed[prefix + "qkv.weight"] = np.concatenate(
        [parts["query.weight"], parts["key.weight"], parts["value.weight"]], axis=0
    )
    for src, dst in (("query.bias", "q_bias"), ("value.bias", "v_bias")):
      if prefix + src in renamed:
        renamed[prefix + dst] = renamed.pop(prefix + src)
    if prefix + "key.bias" in renamed:
      k_bias = renamed.pop(prefix + "key.bias")
      if np.any(k_bias != 0):
        raise CheckpointError(
            f"{_hf_name(prefix + 'key.bias')!r} is non-zero; SwinV2 fixes the "
            "key bias at zero, so this checkpoint is not a SwinV2 one."
        )
  return renamed


def _hf_name(timm_key: str) -> str:
  return "encoder." + timm_key.replace(".attn.", ".attention.self.")


def _linear(w: np.ndarray) -> np.ndarray:
  return np.ascontiguousarray(w.T)


def _conv(w: np.ndarray) -> np.ndarray:
  return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def _same(w: np.ndarray) -> np.ndarray:
  return w


def _norm_rules(prefix: str, path: tuple[str, ...]) -> list[tuple[str, tuple[str, ...], Callable]]:
  return [(prefix + "weight", path + ("scale",), _same), (prefix + "bias", path + ("bias",), _same)]


def _linear_rules(prefix: str, path: tuple[str, ...], bias: bool = True) -> list:
  rules = [(prefix + "weight", path + ("kernel",), _linear)]
  return rules + ([(prefix + "bias", path + ("bias",), _same)] if bias else [])


def _flax_rules(depths: tuple[int, ...]) -> list[tuple[str, tuple[str, ...], Callable]]:
  """(canonical torch key, Flax param path, transform) for every parameter of the model."""
  rules = [
      ("patch_embed.proj.weight", ("patch_embed", "proj", "kernel"), _conv),
      ("patch_embed.proj.bias", ("patch_embed", "proj", "bias"), _same),
  ]
  rules += _norm_rules("patch_embed.norm.", ("patch_embed", "norm"))
  for i, depth in enumerate(depths):
    stage = f"stage_{i}"
    for j in range(depth):
      t, f = f"layers.{i}.blocks.{j}.", (stage, f"block_{j}")
      attn = f + ("attn",)
      rules += [
          (t + "attn.logit_scale", attn + ("logit_scale",), _same),
          (t + "attn.q_bias", attn + ("q_bias",), _same),
          (t + "attn.v_bias", attn + ("v_bias",), _same),
      ]
      rules += _linear_rules(t + "attn.qkv.", attn + ("qkv",), bias=False)
      rules += _linear_rules(t + "attn.proj.", attn + ("proj",))
      rules += _linear_rules(t + "attn.cpb_mlp.0.", attn + ("cpb_mlp", "hidden"))
      rules += _linear_rules(t + "attn.cpb_mlp.2.", attn + ("cpb_mlp", "out"), bias=False)
      rules += _norm_rules(t + "norm1.", f + ("norm1",)) + _norm_rules(t + "norm2.", f + ("norm2",))
      rules += _linear_rules(t + "mlp.fc1.", f + ("mlp", "fc1"))
      rules += _linear_rules(t + "mlp.fc2.", f + ("mlp", "fc2"))
    if i < len(depths) - 1:
      merge = (stage, "downsample")
      rules += _linear_rules(
          f"layers.{i}.downsample.reduction.", merge + ("reduction",), bias=False
      )
      rules += _norm_rules(f"layers.{i}.downsample.norm.", merge + ("norm",))
  return rules + _norm_rules("norm.", ("norm",))


# ----------------------------------------------------------------------------------------------
# Inferring the architecture from shapes.


def _infer_model_kwargs(
    state: Mapping[str, np.ndarray],
    buffers: Mapping[str, np.ndarray],
    window_size: int | None,
    pretrained_window_sizes: tuple[int, ...] | None,
) -> dict[str, Any]:
  """SwinV2 field values from a canonical state dict (and its position buffers when present)."""
  if "patch_embed.proj.weight" not in state:
    raise CheckpointError(
        "Checkpoint has no patch embedding ('patch_embed.proj.weight' or HF "
        "'embeddings.patch_embeddings.projection.weight')."
    )
  embed_dim, _, patch_size, _ = state["patch_embed.proj.weight"].shape
  blocks = {}
  for key in state:
    if m := re.match(r"layers\.(\d+)\.blocks\.(\d+)\.", key):
      blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
  if not blocks or sorted(blocks) != list(range(len(blocks))):
    raise CheckpointError(f"Checkpoint stages are not numbered 0..n−1: found {sorted(blocks)}.")
  depths = tuple(max(blocks[i]) + 1 for i in range(len(blocks)))
  num_heads = []
  for i in range(len(depths)):
    key = f"layers.{i}.blocks.0.attn.logit_scale"
    if key not in state:
      raise CheckpointError(f"Checkpoint lacks {key!r}, needed to infer stage {i}'s heads.")
    num_heads.append(int(state[key].shape[0]))
  fc1 = state.get("layers.0.blocks.0.mlp.fc1.weight")
  mlp_ratio = float(fc1.shape[0] / fc1.shape[1]) if fc1 is not None else 4.0
  windows = _windows_from_buffers(buffers, len(depths))
  inferred_window = max((w for w, _ in windows.values()), default=None)
  if window_size is None:
    window_size = inferred_window
  elif inferred_window is not None and inferred_window != window_size:
    raise CheckpointError(
        f"window size {window_size} was requested but the checkpoint's "
        f"relative_coords_table says {inferred_window}; drop --window-size."
    )
  if window_size is None:
    raise CheckpointError(
        "The checkpoint carries no relative_coords_table or "
        "relative_position_index buffer to read the window size from; pass "
        "--window-size (8 or 16 for swinv2_*_window8/16_256)."
    )
  pretrained = _pretrained_windows(windows, len(depths), pretrained_window_sizes)
  return dict(
      embed_dim=int(embed_dim),
      depths=depths,
      num_heads=tuple(num_heads),
      window_size=int(window_size),
      pretrained_window_sizes=pretrained,
      patch_size=int(patch_size),
      mlp_ratio=mlp_ratio,
  )


def _pretrained_windows(
    windows: Mapping[int, tuple[int, int]], num_stages: int, requested: tuple[int, ...] | None
) -> tuple[int, ...]:
  """Pretraining window per stage: as requested, else read from the coords tables, else 0."""
  from_tables = None
  if len(windows) == num_stages:
    from_tables = tuple(windows[i][1] for i in range(num_stages))
  if requested is not None:
    requested = tuple(int(w) for w in requested)
    if len(requested) != num_stages:
      raise CheckpointError(
          f"{len(requested)} pretrained window sizes given for a "
          f"{num_stages}-stage model; give one per stage."
      )
    if from_tables is not None and from_tables != requested:
      raise CheckpointError(
          f"pretrained window sizes {requested} were requested but the "
          f"checkpoint's relative_coords_table says {from_tables}; drop "
          "--pretrained-window-sizes."
      )
    return requested
  if from_tables is None:
    print(
        "convert: no relative_coords_table in the checkpoint, so pretrained_window_sizes are "
        "taken as 0 (right for swinv2_*_window8/16_256); pass --pretrained-window-sizes for "
        "models fine-tuned at a new window, e.g. 12 12 12 6 for *_window12to16_192to256."
    )
    return (0,) * num_stages
  return from_tables


def _windows_from_buffers(
    buffers: Mapping[str, np.ndarray], num_stages: int
) -> dict[int, tuple[int, int]]:
  """{stage: (window, pretrained window or 0)} from the first block's position buffers."""
  found = {}
  for i in range(num_stages):
    prefix = f"layers.{i}.blocks.0.attn."
    table = buffers.get(prefix + "relative_coords_table")
    index = buffers.get(prefix + "relative_position_index")
    if table is not None:
      window = (table.shape[-2] + 1) // 2
      found[i] = (window, _pretrained_window_from_table(table, window))
    elif index is not None:
      found[i] = (int(round(math.sqrt(index.shape[0]))), 0)
  return found


def _pretrained_window_from_table(table: np.ndarray, window: int) -> int:
  """Invert the table's scaling: its largest entry is log2(8·(window−1)/d + 1)/3, where d is
  P−1 for a pretraining window P, else window−1.

  A pretraining window equal to the stage's window cannot be told from none (0); both give the
  same numbers at this window, and 0 is what the published checkpoints use.
  """
  if window <= 1:
    return 0
  largest = float(np.max(table))
  divisor = 8.0 * (window - 1) / (2.0 ** (3.0 * largest) - 1.0)
  pretrained = int(round(divisor)) + 1
  return 0 if pretrained == window else pretrained


# ----------------------------------------------------------------------------------------------
# The conversion.


def convert_state_dict(
    state: Mapping[str, np.ndarray],
    *,
    window_size: int | None = None,
    pretrained_window_sizes: tuple[int, ...] | None = None,
) -> tuple[dict, dict[str, Any]]:
  """PyTorch SwinV2 state dict → ({'params': Flax tree}, SwinV2 kwargs).

  `window_size` and `pretrained_window_sizes` are read from the checkpoint's relative-coords
  buffers (Microsoft / timm 0.6.x keep them); HF and timm >= 0.9 checkpoints have none, so
  `window_size` must then be given, and `pretrained_window_sizes` for a model fine-tuned at a
  window other than its pretraining one. Given values must agree with the buffers. The returned
  variables go straight into `SwinV2(**kwargs).apply(variables, x)`.
  """
  stripped = {_strip_prefixes(k): k for k in state}
  layout = detect_layout(sorted(stripped))
  dropped = sorted(k for k in stripped if k.startswith(_HEAD_PREFIXES))
  if dropped:
    print(f"convert: dropping the classification head ({', '.join(dropped)}).")
  original_name = {
      _canonical_key(k, layout): original
      for k, original in stripped.items()
      if not k.startswith(_HEAD_PREFIXES)
  }
  if len(original_name) != len(stripped) - len(dropped):
    clashing = sorted(set(state) - set(original_name.values()) - {stripped[k] for k in dropped})
    raise CheckpointError(
        f"Keys {_some(clashing)} name the same parameter as others (the "
        "checkpoint mixes prefixed and unprefixed keys or several layouts); "
        "keep one copy."
    )
  state = {k: np.asarray(state[original]) for k, original in original_name.items()}
  if layout == "hf":
    state = _fuse_hf_qkv(state)
  buffers = {k: v for k, v in state.items() if k.endswith(_BUFFER_SUFFIXES)}
  weights = {k: v for k, v in state.items() if k not in buffers}

  model_kwargs = _infer_model_kwargs(weights, buffers, window_size, pretrained_window_sizes)
  rules = _flax_rules(model_kwargs["depths"])
  expected = {key for key, _, _ in rules}
  unknown = sorted(set(weights) - expected)
  missing = sorted(expected - set(weights))
  if unknown or missing:
    unknown = [original_name.get(k, k) for k in unknown]
    raise CheckpointError(
        f"Cannot convert this {layout} SwinV2 checkpoint: unknown keys {_some(unknown)}; "
        f"missing parameters (timm names) {_some(missing)}. Is it a SwinV2 with a layout this "
        "converter knows (HF, Microsoft / timm 0.6.x, timm >= 0.9)?"
    )

  params: dict = {}
  for key, path, transform in rules:
    node = params
    for name in path[:-1]:
      node = node.setdefault(name, {})
    node[path[-1]] = np.asarray(transform(weights[key]), dtype=np.float32)
  _check_shapes(params, model_kwargs)
  return {"params": params}, model_kwargs


def _check_shapes(params: dict, model_kwargs: dict[str, Any]) -> None:
  """Every converted array has the shape the model declares for it."""
  import jax
  import jax.numpy as jnp
  from jaxvqa.models.swinv2 import SwinV2

  model = SwinV2(**model_kwargs)
  side = model_kwargs["patch_size"] * 2 ** (len(model_kwargs["depths"]) - 1)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, side, side, 3))))
  want = jax.tree_util.tree_flatten_with_path(shapes["params"])[0]
  have = dict(jax.tree_util.tree_flatten_with_path(params)[0])
  wrong = [
      f"{jax.tree_util.keystr(p)}: checkpoint {have[p].shape if p in have else 'absent'}, "
      f"model {s.shape}"
      for p, s in want
      if p not in have or have[p].shape != s.shape
  ]
  if wrong or len(want) != len(have):
    raise CheckpointError(
        "Converted parameters do not fit the inferred SwinV2 " f"{model_kwargs}: {wrong[:10]}"
    )


def _some(keys: list[str], limit: int = 20) -> str:
  return str(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def param_count(variables: Mapping) -> int:
  """Number of scalars in a (nested) params tree."""
  import jax

  return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(variables)))


# ----------------------------------------------------------------------------------------------
# Saving and loading the converted weights.


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


def hf_config_windows(checkpoint: Path) -> tuple[int | None, tuple[int, ...] | None]:
  """(window_size, pretrained_window_sizes) from a SwinV2 config.json beside the checkpoint."""
  config_path = checkpoint.parent / "config.json"
  if not config_path.is_file():
    return None, None
  config = json.loads(config_path.read_text())
  if config.get("model_type") != "swinv2":
    return None, None
  pretrained = config.get("pretrained_window_sizes")
  return config.get("window_size"), tuple(pretrained) if pretrained is not None else None

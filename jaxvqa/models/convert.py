"""PyTorch SwinV2 checkpoints (HF transformers, timm 0.6.x / Microsoft, timm >= 0.9) → Flax params.

`convert_state_dict` takes a flat {torch key: array} (read by
`jaxvqa.models.checkpoint_files.load_checkpoint`), renames it into one canonical naming and moves
every array to its place in the Flax tree (the key tables are `jaxvqa.models.torch_keys`), infers
the SwinV2 fields from the shapes, and checks the result against the model's own shapes.

Classification heads are dropped with a note. Buffers (relative_position_index,
relative_coords_table, attn_mask, k_bias) are recomputed by the model and never loaded; the
coords table, when present, tells the window size and the pretraining window of each stage.
Any other unknown key, or any parameter the model needs and the checkpoint lacks, is an error
naming the keys: there is no silent partial load.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

import numpy as np

from jaxvqa.models import torch_keys
from jaxvqa.models.torch_keys import CheckpointError


def _infer_model_kwargs(
    state: Mapping[str, np.ndarray],
    buffers: Mapping[str, np.ndarray],
    window_size: int | None,
    pretrained_window_sizes: tuple[int, ...] | None,
    given_by: str,
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
        f"window size {window_size} comes from {given_by} but the checkpoint's "
        f"relative_coords_table says {inferred_window}; drop it."
    )
  if window_size is None:
    raise CheckpointError(
        "The checkpoint carries no relative_coords_table or "
        "relative_position_index buffer to read the window size from, and no config.json "
        "or file name says which model it is; pass --window-size (8 or 16 for "
        "swinv2_*_window8/16_256)."
    )
  pretrained = _pretrained_windows(windows, len(depths), pretrained_window_sizes, given_by)
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
    windows: Mapping[int, tuple[int, int]],
    num_stages: int,
    requested: tuple[int, ...] | None,
    given_by: str,
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
          f"pretrained window sizes {requested} come from {given_by} but the "
          f"checkpoint's relative_coords_table says {from_tables}; drop them."
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


def convert_state_dict(
    state: Mapping[str, np.ndarray],
    *,
    window_size: int | None = None,
    pretrained_window_sizes: tuple[int, ...] | None = None,
    given_by: str = "--window-size / --pretrained-window-sizes",
) -> tuple[dict, dict[str, Any]]:
  """PyTorch SwinV2 state dict → ({'params': Flax tree}, SwinV2 kwargs).

  `window_size` and `pretrained_window_sizes` are read from the checkpoint's relative-coords
  buffers (Microsoft / timm 0.6.x keep them); HF and timm >= 0.9 checkpoints have none, so
  `window_size` must then be given, and `pretrained_window_sizes` for a model fine-tuned at a
  window other than its pretraining one. Given values must agree with the buffers; `given_by`
  says where they came from, for the message when they do not. The returned
  variables go straight into `SwinV2(**kwargs).apply(variables, x)`.
  """
  stripped = {torch_keys.strip_prefixes(k): k for k in state}
  layout = torch_keys.detect_layout(sorted(stripped))
  dropped = sorted(k for k in stripped if k.startswith(torch_keys.HEAD_PREFIXES))
  if dropped:
    print(f"convert: dropping the classification head ({', '.join(dropped)}).")
  original_name = {
      torch_keys.canonical_key(k, layout): original
      for k, original in stripped.items()
      if not k.startswith(torch_keys.HEAD_PREFIXES)
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
    state = torch_keys.fuse_hf_qkv(state)
  buffers = {k: v for k, v in state.items() if k.endswith(torch_keys.BUFFER_SUFFIXES)}
  weights = {k: v for k, v in state.items() if k not in buffers}

  model_kwargs = _infer_model_kwargs(
      weights, buffers, window_size, pretrained_window_sizes, given_by
  )
  rules = torch_keys.flax_rules(model_kwargs["depths"])
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
        f"Converted parameters do not fit the inferred SwinV2 {model_kwargs}: {wrong[:10]}"
    )


def _some(keys: list[str], limit: int = 20) -> str:
  return str(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def param_count(variables: Mapping) -> int:
  """Number of scalars in a (nested) params tree."""
  import jax

  return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(variables)))

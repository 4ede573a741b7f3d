"""Key names of PyTorch SwinV2 checkpoints, and where each parameter goes in the Flax tree.

Layouts understood (a `module.` or HF `swinv2.` prefix is stripped first):
- HF `transformers`: `embeddings.*`, `encoder.layers.i.blocks.j.attention.self.{query,key,value}`,
  `encoder.layers.i.downsample` at the end of stages 0..n−2, `layernorm.*`, `classifier.*`.
- Microsoft / timm 0.6.x: `patch_embed.*`, `layers.i.blocks.j.attn.{qkv,q_bias,v_bias,...}`,
  `layers.i.downsample` at the END of stages 0..n−2, `norm.*`, `head.weight`.
- timm >= 0.9: as above but `layers.i.downsample` at the START of stages 1..n−1, `head.fc.*`.

Every layout is renamed into one canonical naming (timm's names, with the downsample kept at the
end of its stage as the Flax model has it: `canonical_key`, plus `fuse_hf_qkv` for HF's separate
query/key/value); `flax_rules` then lists, for every parameter of a SwinV2 of given depths, its
canonical key, its Flax path and the transform of its array (torch Linear (out, in) → Flax
kernel (in, out); Conv (O, I, kh, kw) → (kh, kw, I, O)). `jaxvqa.models.convert` applies them.
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np

# Recomputed by the model, never loaded; the coords table tells the windows (see convert.py).
BUFFER_SUFFIXES = ("relative_position_index", "relative_coords_table", "attn_mask", "attn.k_bias")
HEAD_PREFIXES = ("head.", "classifier.")
_STRIPPED_PREFIXES = ("module.", "swinv2.")


class CheckpointError(ValueError):
  """A checkpoint that cannot be converted; the message names the keys and what to do."""


def strip_prefixes(key: str) -> str:
  """`key` without a DataParallel `module.` or HF `swinv2.` prefix."""
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


def canonical_key(key: str, layout: str) -> str:
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


def fuse_hf_qkv(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
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


def flax_rules(depths: tuple[int, ...]) -> list[tuple[str, tuple[str, ...], Callable]]:
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

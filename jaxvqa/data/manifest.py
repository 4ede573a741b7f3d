"""A made set as its readers see it: the manifest's rows, a row's bits per pixel, and an encode's
frames as VMAF judged them (`jaxvqa make-dataset` writes it: jaxvqa/data/compress.py).

Training on decoded arrays (jaxvqa/data/decoded.py), the bits-per-pixel baseline and the Beam
pipeline read a set through this module only, so none of them needs the code that makes one.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxvqa.data import ffmpeg_reader

MANIFEST_NAME = "manifest.jsonl"
MANIFEST_KEYS = (
    "source",
    "source_path",
    "path",
    "codec",
    "rung",
    "target_kbps",
    "bitrate_kbps",
    "vmaf",
    "vmaf_frames",
    "width",
    "height",
    "num_frames",
    "fps",
    "scale",
    "encode_width",
    "encode_height",
    "bits_per_pixel",
)


def read_manifest(path: str | os.PathLike) -> list[dict]:
  """The rows of a manifest.jsonl."""
  with open(path) as file:
    return [json.loads(line) for line in file if line.strip()]


def bits_per_pixel(row: dict) -> float:
  """Achieved bits per coded pixel of a manifest row: a lower rung counts the size it was encoded
  at (`encode_width` × `encode_height`); rows made before `--scales` have the display size only."""
  width = row.get("encode_width", row["width"])
  height = row.get("encode_height", row["height"])
  return float(row["bitrate_kbps"]) * 1000.0 / (float(width) * float(height) * float(row["fps"]))


def read_display_frames(
    row: dict, dataset_dir: str | os.PathLike, frame_indices: Sequence[int] | None = None
) -> np.ndarray:
  """The frames of a manifest row's encode as VMAF judged them: uint8 [N, H, W, 3] rgb24.

  Decodes `dataset_dir/row["path"]` at the display size (row["width"], row["height"]) with
  `ffmpeg_reader.read_frames_at_size`: an encode made below it is upscaled with the very filter VMAF's
  comparison used (bicubic, in yuv420p), then converted to rgb24 as a plain ffmpeg decode does;
  a scale-1 encode passes the scaler untouched (a plain decode).

  Args:
    row: a manifest row (needs path, width, height; num_frames to check `frame_indices`).
    dataset_dir: the make-dataset output directory the row's path is relative to.
    frame_indices: display-order frame numbers (repeats and any order allowed);
      None for all frames.
  Returns:
    uint8 [N, height, width, 3].
  Raises:
    FileNotFoundError: the encode is missing.
    IndexError: a frame index outside the encode's num_frames.
    decode.VideoDecodeError: ffmpeg cannot read the encode, or decodes fewer frames than asked.
  """
  path = Path(dataset_dir) / row["path"]
  if not path.is_file():
    raise FileNotFoundError(
        f"{path}: the encode named by manifest row path={row['path']!r} "
        f"is missing; re-run make-dataset on {dataset_dir}"
    )
  if frame_indices is not None:
    beyond = sorted(
        {int(i) for i in frame_indices if i < 0 or i >= int(row.get("num_frames", sys.maxsize))}
    )
    if beyond:
      raise IndexError(
          f"frame_indices {beyond[:5]} are outside {row['path']}, which has "
          f"{row.get('num_frames', '?')} frames (0-based)"
      )
  return ffmpeg_reader.read_frames_at_size(
      path, frame_indices, (int(row["width"]), int(row["height"]))
  )

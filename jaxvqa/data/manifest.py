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

from jaxvqa.data import encoding
from jaxvqa.data import ffmpeg

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

  Decodes `dataset_dir/row["path"]` and, for an encode made below the display
  size, upscales it to (row["width"], row["height"]) with the very filter VMAF's
  comparison used (bicubic, in yuv420p), then converts to rgb24 as a plain
  ffmpeg decode does. Scale-1 encodes are a plain decode.

  Args:
    row: a manifest row (needs path, width, height, encode_width, encode_height).
    dataset_dir: the make-dataset output directory the row's path is relative to.
    frame_indices: display-order frame numbers (repeats and any order allowed);
      None for all frames.
  Returns:
    uint8 [N, height, width, 3].
  """
  path = Path(dataset_dir) / row["path"]
  if not path.is_file():
    raise FileNotFoundError(
        f"{path}: the encode named by manifest row path={row['path']!r} "
        f"is missing; re-run make-dataset on {dataset_dir}"
    )
  width, height = int(row["width"]), int(row["height"])
  filters = []
  unique = None
  if frame_indices is not None:
    unique = sorted({int(i) for i in frame_indices})
    beyond = [i for i in unique if i < 0 or i >= int(row.get("num_frames", sys.maxsize))]
    if beyond:
      raise IndexError(
          f"frame_indices {beyond[:5]} are outside {row['path']}, which has "
          f"{row.get('num_frames', '?')} frames (0-based)"
      )
    if not unique:
      return np.zeros((0, height, width, 3), np.uint8)
    filters.append("select='" + "+".join(f"eq(n\\,{i})" for i in unique) + "'")
  if (int(row.get("encode_width", width)), int(row.get("encode_height", height))) != (
      width,
      height,
  ):
    filters.append(encoding.upscale_filter(width, height))
  completed = ffmpeg.run_ffmpeg(
      [
          "-v",
          "error",
          "-i",
          path,
          "-map",
          "0:v:0",
          *(["-vf", ",".join(filters)] if filters else []),
          "-fps_mode",
          "passthrough",
          "-f",
          "rawvideo",
          "-pix_fmt",
          "rgb24",
          "-",
      ],
      capture_stdout=True,
  )
  frames = np.frombuffer(completed.stdout, np.uint8).reshape(-1, height, width, 3)
  if unique is None:
    return frames
  if len(frames) != len(unique):
    raise IndexError(
        f"{path}: {len(unique)} frames requested, {len(frames)} decoded: "
        f"frame_indices run past the end of the encode"
    )
  position = {index: k for k, index in enumerate(unique)}
  return frames[[position[int(i)] for i in frame_indices]]

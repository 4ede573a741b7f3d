"""A make-dataset directory decoded once into uint8 arrays, for training at accelerator speed.

    manifest.jsonl ──read_display_frames (thread pool)──▶ frames.npy uint8 [N, F, H, W, 3]
                                                         meta.npz  labels, sources, rungs, rates

Decoding a video per training sample starves a GPU step (the Grain loader gave ~18 videos/s
against ~180 for the step, docs/PERFORMANCE.md). Short corpus clips are small once decoded, so
each encode is decoded once, at F frames (segment centres, as evaluation samples), at its display
size: lower ladder rungs are upscaled exactly as VMAF saw them (`manifest.read_display_frames`).
Crops, fragments and flips then happen on the device (`jaxvqa.kfold.protocol`).

`frames.npy` is a plain .npy file, so `load` memory-maps it instead of reading GBs up front; the
set is written under a temporary name and renamed, so an interrupted build is never mistaken for a
finished one.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from jaxvqa.data import manifest
from jaxvqa.data import video

log = logging.getLogger(__name__)

FRAMES_FILE = "frames.npy"
META_FILE = "meta.npz"
INFO_FILE = "decoded.json"
VERSION = 1


@dataclasses.dataclass(frozen=True)
class DecodedSet:
  """Every encode of a make-dataset directory, decoded; row i of each array is manifest row i."""

  frames: np.ndarray  # uint8 [N, F, H, W, 3], display size, F frames at segment centres
  label: np.ndarray  # float32 [N] mean VMAF of the encode
  frame_label: np.ndarray  # float32 [N, F] VMAF of each stored frame
  source: np.ndarray  # int32 [N] index into `source_names`
  family: np.ndarray  # int32 [N] index into `family_names` (parent medium, for folds)
  rung: np.ndarray  # int32 [N] bitrate group
  codec: np.ndarray  # int32 [N] index into `codec_names`
  bits_per_pixel: np.ndarray  # float32 [N] on the coded size
  scale: np.ndarray  # float32 [N] coded height / display height
  fps: np.ndarray  # float32 [N]
  source_names: tuple[str, ...]
  family_names: tuple[str, ...]
  codec_names: tuple[str, ...]

  def __len__(self) -> int:
    return len(self.label)


def family_of(source_name: str) -> str:
  """The parent medium of a source: `<family>--<n>` names (jaxvqa make-corpus) share one family;
  any other name is its own family."""
  return source_name.split("--")[0]


def stored_frame_indices(num_frames: int, stored: int) -> np.ndarray:
  """The `stored` frames kept of a `num_frames` clip: the segment centres evaluation samples."""
  return video.sample_frame_indices(num_frames, stored, train=False, rng=None)


def _decode_row(task: tuple[dict, str, int]) -> np.ndarray:
  row, dataset_dir, stored = task
  indices = stored_frame_indices(int(row["num_frames"]), stored)
  return manifest.read_display_frames(row, dataset_dir, frame_indices=indices)


def build(
    dataset_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    frames_per_video: int = 8,
    jobs: int | None = None,
    decode: Callable[[tuple[dict, str, int]], np.ndarray] = _decode_row,
) -> Path:
  """Decodes every encode of `dataset_dir` (a make-dataset --out directory) into `out_dir`.

  Reuses `out_dir` when it already holds this set at this frame count. Every encode must have the
  same display size (one corpus is made at one size).
  Returns: out_dir.
  """
  dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
  rows = manifest.read_manifest(dataset_dir / manifest.MANIFEST_NAME)
  if not rows:
    raise ValueError(f"{dataset_dir / manifest.MANIFEST_NAME} lists no encodes")
  fingerprint = {
      "version": VERSION,
      "frames_per_video": frames_per_video,
      "rows": len(rows),
      "manifest_mtime": (dataset_dir / manifest.MANIFEST_NAME).stat().st_mtime,
  }
  info_path = out_dir / INFO_FILE
  if info_path.exists() and json.loads(info_path.read_text()) == fingerprint:
    return out_dir
  sizes = {(int(row["width"]), int(row["height"])) for row in rows}
  if len(sizes) != 1:
    raise ValueError(
        f"{dataset_dir}: encodes have several display sizes {sorted(sizes)}; a decoded "
        "set needs one (make the corpus at one size)"
    )
  ((width, height),) = sizes
  out_dir.mkdir(parents=True, exist_ok=True)
  partial = out_dir / (FRAMES_FILE + ".partial")
  frames = np.lib.format.open_memmap(
      partial, mode="w+", dtype=np.uint8, shape=(len(rows), frames_per_video, height, width, 3)
  )
  started = time.perf_counter()
  tasks = [(row, str(dataset_dir), frames_per_video) for row in rows]
  # Threads, not processes: the work is ffmpeg's (the GIL is free while it runs), and forking a
  # process that has started JAX can deadlock.
  with concurrent.futures.ThreadPoolExecutor(jobs or os.cpu_count()) as pool:
    for index, clip in enumerate(
        tqdm(pool.map(decode, tasks), total=len(tasks), desc="decoding encodes", unit="video")
    ):
      frames[index] = clip
  frames.flush()
  del frames
  _write_meta(rows, out_dir / META_FILE, frames_per_video)
  os.replace(partial, out_dir / FRAMES_FILE)
  info_path.write_text(json.dumps(fingerprint))
  log.info(
      "decoded %d encodes (%d frames each, %dx%d) in %.0f s",
      len(rows),
      frames_per_video,
      width,
      height,
      time.perf_counter() - started,
  )
  return out_dir


def _names_and_ids(values: list[str]) -> tuple[tuple[str, ...], np.ndarray]:
  names = tuple(sorted(set(values)))
  lookup = {name: i for i, name in enumerate(names)}
  return names, np.array([lookup[value] for value in values], np.int32)


def _write_meta(rows: list[dict], path: Path, frames_per_video: int) -> None:
  source_names, source = _names_and_ids([row["source"] for row in rows])
  family_names, family = _names_and_ids([family_of(row["source"]) for row in rows])
  codec_names, codec = _names_and_ids([row["codec"] for row in rows])
  frame_label = np.array(
      [
          np.asarray(row["vmaf_frames"], np.float32)[
              stored_frame_indices(len(row["vmaf_frames"]), frames_per_video)
          ]
          for row in rows
      ]
  )
  np.savez(
      path,
      label=np.array([row["vmaf"] for row in rows], np.float32),
      frame_label=frame_label,
      source=source,
      family=family,
      rung=np.array([row["rung"] for row in rows], np.int32),
      codec=codec,
      bits_per_pixel=np.array([manifest.bits_per_pixel(row) for row in rows], np.float32),
      scale=np.array(
          [float(row.get("encode_height", row["height"])) / float(row["height"]) for row in rows],
          np.float32,
      ),
      fps=np.array([row["fps"] for row in rows], np.float32),
      source_names=np.array(source_names),
      family_names=np.array(family_names),
      codec_names=np.array(codec_names),
  )


def load(out_dir: str | os.PathLike) -> DecodedSet:
  """The set `build` wrote; frames memory-mapped."""
  out_dir = Path(out_dir)
  if not (out_dir / FRAMES_FILE).exists():
    raise FileNotFoundError(
        f"{out_dir / FRAMES_FILE} not found: build the decoded set first "
        "(jaxvqa.data.decoded.build)"
    )
  meta = np.load(out_dir / META_FILE)
  names = {
      key: tuple(str(name) for name in meta[key])
      for key in ("source_names", "family_names", "codec_names")
  }
  arrays = {key: meta[key] for key in meta.files if key not in names}
  return DecodedSet(frames=np.load(out_dir / FRAMES_FILE, mmap_mode="r"), **arrays, **names)

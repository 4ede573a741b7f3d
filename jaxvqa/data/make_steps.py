"""make-dataset's work as a plan and one step per element, on the files of the layout in
`jaxvqa.data.compress`. The thread pool there (`compress.make_dataset`) and the Apache Beam
pipeline (`jaxvqa.beam.make_dataset`) run exactly these:

    plan_sources(sources, job)       → a SourceTask per source file, and the failures found
                                       without running anything (missing file, duplicate id)
    make_source(task, job, threads)  → its mezzanine (made, or reused when its sidecar matches)
    plan_encodes(mezzanine, job)     → an EncodeTask per (rung, codec) still to make, and the rows
                                       an earlier run finished (skipped)
    make_encode(task, job, threads)  → its manifest row (VMAF-labelled; sidecar written)
    write_manifest(out_dir, rows)

The ffmpeg steps (mezzanine, encode, VMAF) and their decisions are in `jaxvqa.data.encoding`,
the ladder (rungs, scales, names) in `jaxvqa.data.ladder`.

- Resumable: outputs are written under temporary names and renamed when complete; a sidecar JSON
  is written (atomically) only after VMAF succeeds, and carries the recipe that made it, so a
  re-run skips finished encodes and redoes any whose recipe changed (`RECIPE_VERSION`). The
  manifest is rewritten atomically at the end from the rows. `remove_stale_temporaries` clears
  what a killed run left.
- Failures are per element and named (the source file, or "<source id>/<encode name>"); the
  rest is still made.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from jaxvqa.data import video_source
from jaxvqa.data import encoding
from jaxvqa.data import ffmpeg
from jaxvqa.data import label_tools
from jaxvqa.data import ladder
from jaxvqa.data.manifest import MANIFEST_KEYS, MANIFEST_NAME, bits_per_pixel

VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4",
        ".m4v",
        ".mov",
        ".mkv",
        ".webm",
        ".avi",
        ".y4m",
        ".ts",
        ".mts",
        ".m2ts",
        ".mpg",
        ".mpeg",
        ".flv",
        ".wmv",
        ".3gp",
        ".ogv",
        ".mxf",
    }
)
MEZZANINE_SUFFIX = ".mkv"
RECIPE_VERSION = 2  # bump when encoder or VMAF settings change, so old sidecars are redone


@dataclasses.dataclass(frozen=True)
class Failure:
  """Something that could not be made: `name` is the source file or encode."""

  name: str
  reason: str


# ----------------------------------------------------------------------------- the plan


@dataclasses.dataclass(frozen=True)
class Job:
  """What every task of one make-dataset run shares (plain data: Beam ships it to workers)."""

  out_dir: Path  # absolute; the layout in the module docstring
  rungs: tuple[ladder.Rung, ...]
  codecs: tuple[str, ...]
  max_frames: int | None = None  # cut each source to its first N frames
  scale: tuple[int, int] | None = None  # the mezzanines' (width, height)

  @classmethod
  def create(
      cls,
      out_dir: str | os.PathLike,
      ladder_kbps: Sequence[float],
      codecs: Sequence[str] = ("libx264",),
      *,
      max_frames: int | None = None,
      scale: tuple[int, int] | None = None,
      scales: Sequence[float] = (1.0,),
  ) -> Job:
    """Checks the settings (ValueError naming the bad one) and numbers the ladder."""
    rungs = ladder.make_ladder(ladder_kbps, scales)
    unknown = [codec for codec in codecs if codec not in encoding.CODECS]
    if unknown or not codecs:
      raise ValueError(f"unknown codecs {unknown}; choose from {sorted(encoding.CODECS)}")
    return cls(
        Path(out_dir).absolute(),
        tuple(rungs),
        tuple(codecs),
        max_frames,
        tuple(scale) if scale else None,
    )

  @property
  def encodes_per_source(self) -> int:
    return len(self.rungs) * len(self.codecs)


@dataclasses.dataclass(frozen=True)
class SourceTask:
  """One source file to normalise into its mezzanine."""

  original: Path
  recipe: dict  # what the mezzanine is made from (`_mezzanine_recipe`)

  @property
  def name(self) -> str:
    return str(self.original)


@dataclasses.dataclass(frozen=True)
class EncodeTask:
  """One (source, rung, codec): encode the mezzanine, VMAF-label the encode."""

  mezzanine: encoding.Mezzanine
  codec: str
  rung: ladder.Rung
  recipe: dict  # what the encode is made from (`_encode_recipe`); its sidecar must match

  @property
  def name(self) -> str:
    return (
        f"{self.mezzanine.source_id}/"
        f"{ladder.encode_name(self.codec, self.rung.kbps, self.rung.scale)}"
    )


def plan_sources(
    sources: str | os.PathLike | Iterable[str | os.PathLike], job: Job
) -> tuple[list[SourceTask], list[Failure]]:
  """A task per source file, and the failures found by looking (missing file, duplicate id).

  sources: a directory (its video files, by extension) or a list of files.
  """
  if isinstance(sources, (str, os.PathLike)):
    originals = find_sources(sources).videos
  else:
    originals = [Path(source) for source in sources]
  tasks: list[SourceTask] = []
  failures: list[Failure] = []
  by_id: dict[str, Path] = {}
  for original in originals:
    if original.stem in by_id:
      failures.append(
          Failure(
              str(original),
              f"duplicate source id {original.stem!r} "
              f"(also {by_id[original.stem]}); rename one of them",
          )
      )
    elif not original.is_file():
      failures.append(Failure(str(original), "file not found"))
    else:
      by_id[original.stem] = original
      tasks.append(SourceTask(original, _mezzanine_recipe(original, job)))
  return tasks, failures


def plan_encodes(mezzanine: encoding.Mezzanine, job: Job) -> tuple[list[EncodeTask], list[dict]]:
  """The encodes of a source still to make, and the rows of those an earlier run finished."""
  mezzanine_recipe = _mezzanine_recipe(mezzanine.original, job)
  pending, finished = [], []
  for codec in job.codecs:
    for rung in job.rungs:
      task = EncodeTask(mezzanine, codec, rung, _encode_recipe(mezzanine_recipe, codec, rung))
      row = _load_sidecar(_encode_path(job.out_dir, task).with_suffix(".json"), task.recipe)
      if row is not None and (job.out_dir / row["path"]).is_file():
        finished.append(row)
      else:
        pending.append(task)
  return pending, finished


# ----------------------------------------------------------------------------- the steps


def reuse_mezzanine(task: SourceTask, job: Job) -> encoding.Mezzanine | None:
  """The source's mezzanine when its sidecar says it was made by `task.recipe`, else None."""
  path = _mezzanine_path(task.original, job.out_dir)
  try:
    with open(path.with_suffix(".json")) as file:
      record = json.load(file)
    if record["recipe"] == task.recipe and path.is_file():
      return encoding.Mezzanine(
          task.original.stem,
          task.original,
          path,
          record["width"],
          record["height"],
          record["num_frames"],
          record["fps"],
          record["fps_rational"],
      )
  except (OSError, ValueError, KeyError):
    pass
  return None


def make_source(task: SourceTask, job: Job, threads: int = 1) -> encoding.Mezzanine:
  """The source's mezzanine: reused when its sidecar matches, else made (and its sidecar
  written). Raises on failure; `source_failure` names it."""
  reused = reuse_mezzanine(task, job)
  if reused is not None:
    return reused
  path = _mezzanine_path(task.original, job.out_dir)
  mezzanine = encoding.make_mezzanine(
      task.original, path, scale=job.scale, max_frames=job.max_frames, threads=threads
  )
  write_atomically(
      path.with_suffix(".json"),
      json.dumps(
          {
              "recipe": task.recipe,
              "width": mezzanine.width,
              "height": mezzanine.height,
              "num_frames": mezzanine.num_frames,
              "fps": mezzanine.fps,
              "fps_rational": mezzanine.fps_rational,
          }
      ),
  )
  return mezzanine


def make_encode(task: EncodeTask, job: Job, threads: int = 1) -> dict:
  """Encodes, checks and VMAF-labels one (source, rung, codec); writes its sidecar; returns its
  manifest row. Raises on failure; `encode_failure` names it."""
  mezzanine, rung, out_dir = task.mezzanine, task.rung, job.out_dir
  encode_path = _encode_path(out_dir, task)
  width, height = ladder.coded_size(mezzanine.width, mezzanine.height, rung.scale)
  encoding.encode(
      mezzanine,
      task.codec,
      rung.kbps,
      encode_path,
      threads=encoding.ENCODER_THREADS,
      size=(width, height),
      decode_threads=threads,
  )
  num_packets, packet_bytes = encoding.packets(encode_path)
  if num_packets != mezzanine.num_frames:
    raise encoding.EncodeCheckError(
        f"the encode has {num_packets} frames, the mezzanine {mezzanine.num_frames}: the "
        "encoder dropped or added frames"
    )
  display = (mezzanine.width, mezzanine.height)
  vmaf_frames = encoding.measure_vmaf(
      encode_path,
      mezzanine.path,
      threads=threads,
      display_size=display if (width, height) != display else None,
  )
  if len(vmaf_frames) != mezzanine.num_frames:
    raise encoding.EncodeCheckError(
        f"VMAF scored {len(vmaf_frames)} frames, the source has {mezzanine.num_frames}: the "
        "encoder dropped or added frames"
    )
  duration = mezzanine.num_frames / mezzanine.fps
  row = {
      "source": mezzanine.source_id,
      "source_path": mezzanine.path.relative_to(out_dir).as_posix(),
      "path": encode_path.relative_to(out_dir).as_posix(),
      "codec": task.codec,
      "rung": rung.index,
      "target_kbps": float(rung.kbps),
      "bitrate_kbps": packet_bytes * 8 / duration / 1000,
      "vmaf": sum(vmaf_frames) / len(vmaf_frames),
      "vmaf_frames": vmaf_frames,
      "width": mezzanine.width,
      "height": mezzanine.height,
      "num_frames": mezzanine.num_frames,
      "fps": mezzanine.fps,
      "scale": float(rung.scale),
      "encode_width": width,
      "encode_height": height,
  }
  row["bits_per_pixel"] = bits_per_pixel(row)
  write_atomically(
      encode_path.with_suffix(".json"), json.dumps({"recipe": task.recipe, "row": row})
  )
  return row


def source_failure(task: SourceTask, error: Exception) -> Failure:
  """`make_source`'s error as a failure named by the source file."""
  reason = _failure_reason(error)
  if "Error opening input" in reason or "Invalid data" in reason:
    hint = video_source.unopenable_reason(video_source.read_header(task.original))
    reason = f"{hint} (ffmpeg: {reason})" if hint else f"not a video (ffmpeg: {reason})"
  return Failure(task.name, reason)


def encode_failure(task: EncodeTask, error: Exception) -> Failure:
  """`make_encode`'s error as a failure named "<source id>/<encode name>"."""
  return Failure(task.name, _failure_reason(error))


def write_manifest(out_dir: Path, rows: Iterable[dict]) -> list[dict]:
  """Writes out_dir/manifest.jsonl (atomically) from `rows`, and beside it the record of the
  tools that measured their VMAF (`label_tools.LABELS_NAME`); returns the rows sorted as written."""
  rows = sorted(rows, key=lambda row: (row["source"], row["codec"], row["rung"]))
  write_atomically(Path(out_dir) / MANIFEST_NAME, "".join(json.dumps(row) + "\n" for row in rows))
  labels = json.dumps(label_tools.record(), indent=2) + "\n"
  write_atomically(Path(out_dir) / label_tools.LABELS_NAME, labels)
  return rows


def _failure_reason(error: Exception) -> str:
  if isinstance(error, ffmpeg.FfmpegError):
    return error.reason
  if isinstance(error, encoding.EncodeCheckError):
    return str(error)
  return f"{type(error).__name__}: {error}"


def _mezzanine_recipe(original: Path, job: Job) -> dict:
  stat = original.stat()
  return {
      "version": RECIPE_VERSION,
      "original": original.name,
      "bytes": stat.st_size,
      "mtime_ns": stat.st_mtime_ns,
      "scale": list(job.scale) if job.scale else None,
      "max_frames": job.max_frames,
  }


def _encode_recipe(mezzanine_recipe: dict, codec: str, rung: ladder.Rung) -> dict:
  settings = encoding.CODECS[codec]
  recipe = {
      "version": RECIPE_VERSION,
      "mezzanine": mezzanine_recipe,
      "codec": codec,
      "target_kbps": rung.kbps,
      "options": list(settings.options),
      "two_pass": settings.two_pass,
      "rung": rung.index,
  }
  if rung.scale != 1:
    recipe.update(scale=rung.scale, downscaler=encoding.DOWNSCALER, upscaler=encoding.UPSCALER)
  return recipe


def _load_sidecar(path: Path, recipe: dict) -> dict | None:
  """The finished row recorded in `path`, or None when absent, unreadable or stale."""
  try:
    with open(path) as file:
      record = json.load(file)
  except (OSError, ValueError):
    return None
  if record.get("recipe") != recipe or set(record.get("row", {})) != set(MANIFEST_KEYS):
    return None
  return record["row"]


def _encode_path(out_dir: Path, task: EncodeTask) -> Path:
  return (
      out_dir
      / "encodes"
      / task.mezzanine.source_id
      / (
          ladder.encode_name(task.codec, task.rung.kbps, task.rung.scale)
          + encoding.CODECS[task.codec].extension
      )
  )


def _mezzanine_path(original: Path, out_dir: Path) -> Path:
  return out_dir / "sources" / (original.stem + MEZZANINE_SUFFIX)


# ----------------------------------------------------------------------------- files


def write_atomically(path: Path, text: str) -> None:
  """Writes `text` to a temporary file beside `path`, then renames it over `path`."""
  path.parent.mkdir(parents=True, exist_ok=True)
  descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
  try:
    with os.fdopen(descriptor, "w") as file:
      file.write(text)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)
  finally:
    if os.path.exists(temporary):
      os.remove(temporary)


def remove_stale_temporaries(out_dir: Path) -> None:
  """Deletes what a killed run leaves: `.<name>.partial.<ext>` and `.<name>.<random>.tmp`."""
  for pattern in (".*.partial.*", ".*.tmp"):
    for path in out_dir.glob(pattern):
      path.unlink(missing_ok=True)
    for path in out_dir.glob(f"*/{pattern}"):
      path.unlink(missing_ok=True)
    for path in out_dir.glob(f"encodes/*/{pattern}"):
      path.unlink(missing_ok=True)


class Sources(NamedTuple):
  """What a sources directory holds: the video files (by extension) directly in it, and what is
  not read: its other files and its subdirectories (not searched)."""

  videos: list[Path]
  other_files: list[Path]
  subdirectories: list[Path]


def find_sources(directory: str | os.PathLike) -> Sources:
  """The video files (by extension) directly in `directory`, and the files and subdirectories
  skipped (hidden names are neither)."""
  directory = Path(directory)
  if not directory.is_dir():
    raise FileNotFoundError(f"--sources {directory}: not a directory")
  entries = sorted(p for p in directory.iterdir() if not p.name.startswith("."))
  files = [p for p in entries if p.is_file()]
  videos = [p for p in files if p.suffix.lower() in VIDEO_EXTENSIONS]
  return Sources(
      videos=videos,
      other_files=[p for p in files if p not in videos],
      subdirectories=[p for p in entries if p.is_dir()],
  )

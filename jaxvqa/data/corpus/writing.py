"""`make_corpus`: plan, render and encode every clip losslessly in worker processes, resumably."""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxvqa.data import ffmpeg
from jaxvqa.data.corpus.plan import plan_corpus
from jaxvqa.data.corpus.render import render_clip

CORPUS_NAME = "corpus.jsonl"
PARTIAL_LOG_NAME = ".corpus.partial.jsonl"
BATCH_SIZE = 8  # clips of one still per worker task


class CorpusError(RuntimeError):
  """Some clips could not be made; `failures` maps clip name → reason."""

  def __init__(self, failures: dict[str, str]):
    self.failures = dict(failures)
    listed = "; ".join(f"{name}: {reason}" for name, reason in sorted(failures.items())[:5])
    super().__init__(
        f"{len(failures)} corpus clips failed ({listed}); the others are in "
        "corpus.jsonl, run again to retry"
    )


def _partial_path(final: Path) -> Path:
  return final.with_name(f".{final.stem}.partial{final.suffix}")


def encode_lossless(frames: np.ndarray, out_path: Path, fps: float) -> None:
  """Pipes RGB frames into one single-threaded ffmpeg: x264 qp 0, yuv420p, Matroska."""
  num_frames, height, width, _ = frames.shape
  partial = _partial_path(out_path)
  command = [
      ffmpeg.ffmpeg_exe(),
      "-hide_banner",
      "-nostdin",
      "-y",
      "-v",
      "error",
      "-f",
      "rawvideo",
      "-pix_fmt",
      "rgb24",
      "-s",
      f"{width}x{height}",
      "-framerate",
      f"{fps:g}",
      "-i",
      "pipe:0",
      "-an",
      "-vf",
      "format=yuv420p",
      "-frames:v",
      str(num_frames),
      *ffmpeg.LOSSLESS_X264,
      "-threads",
      "1",
      "-f",
      "matroska",
      str(partial),
  ]
  try:
    completed = subprocess.run(
        command,
        input=np.ascontiguousarray(frames).tobytes(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    if completed.returncode != 0:
      raise ffmpeg.FfmpegError(
          command, completed.returncode, completed.stderr.decode("utf-8", errors="replace")
      )
    os.replace(partial, out_path)
  finally:
    partial.unlink(missing_ok=True)


def _cpu_seconds() -> float:
  """CPU time of this process and of its finished children (the ffmpeg encoders)."""
  children = resource.getrusage(resource.RUSAGE_CHILDREN)
  return time.process_time() + children.ru_utime + children.ru_stime


def _make_clips(rows: list[dict], out_dir: str) -> list[tuple[str, float, str | None]]:
  """Worker: renders and writes clips; per clip (name, CPU seconds with ffmpeg's, error)."""
  results = []
  for row in rows:
    started = _cpu_seconds()
    try:
      frames = render_clip(row)
      encode_lossless(frames, Path(out_dir) / f"{row['name']}.mkv", row["fps"])
      error = None
    except Exception as failure:  # named in CorpusError; the other clips go on
      error = (
          failure.reason
          if isinstance(failure, ffmpeg.FfmpegError)
          else (f"{type(failure).__name__}: {failure}")
      )
    results.append((row["name"], _cpu_seconds() - started, error))
  return results


def _batches(rows: list[dict]) -> list[list[dict]]:
  """Clips cut from one still go together (up to BATCH_SIZE), so a worker decodes
  the photograph once (a 4096² WebP takes seconds); the others go alone."""
  batches: list[list[dict]] = []
  by_source: dict[str, list[dict]] = {}
  for row in rows:
    if row["kind"] in ("photo", "image", "deb-photo", "mix"):
      batch = by_source.setdefault(row["source"], [])
      batch.append(row)
      if len(batch) == BATCH_SIZE:
        batches.append(by_source.pop(row["source"]))
    else:
      batches.append([row])
  return batches + list(by_source.values())


def _read_rows(path: Path) -> dict[str, dict]:
  """Rows by name from a jsonl file; a torn last line (a killed run) is ignored."""
  rows: dict[str, dict] = {}
  if path.is_file():
    for line in path.read_text().splitlines():
      try:
        row = json.loads(line)
      except json.JSONDecodeError:
        continue
      if isinstance(row, dict) and "name" in row:
        rows[row["name"]] = row
  return rows


def _write_atomically(path: Path, text: str) -> None:
  partial = path.with_name(f".{path.name}.tmp")
  partial.write_text(text)
  os.replace(partial, path)


def _json_roundtrip(row: dict) -> dict:
  """The row as it reads back from JSON (tuples → lists), for comparisons."""
  return json.loads(json.dumps(row))


# Keyword parameters (declarative), alike in shape to data/pipeline.py's train_loader.
def make_corpus(
    out_dir: str | os.PathLike,
    *,
    count: int = 400,
    width: int = 384,
    height: int = 216,
    num_frames: int = 24,
    fps: float = 24,
    seed: int = 0,
    jobs: int | None = None,
    image_dirs: Sequence[str | os.PathLike] = (),
    photo_dirs: Sequence[str | os.PathLike] = (),
    real_fraction: float | None = None,
    progress: bool = True,
) -> list[dict]:
  """Writes `count` lossless source clips and `corpus.jsonl` to `out_dir`.

  Args:
    out_dir: created if needed; layout and kinds in the module docstring.
    count: number of clips.
    width, height: frame size, even numbers ≥ 16 (yuv420p).
    num_frames: frames per clip.
    fps: constant frame rate written into every clip.
    seed: everything random derives from it and the clip index.
    jobs: worker processes (default: all cores); each drives one ffmpeg with
      one thread.
    image_dirs: directories of JPEG/PNG/WebP files to cut windows from.
    photo_dirs: photo sets made by `jaxvqa fetch-photos`, one family per photo.
    real_fraction: the share of the clips cut from `photo_dirs` (when given; None: 0.5); the
      other kinds share the rest in their usual proportions.
    progress: show a tqdm bar on stderr.
  Returns:
    the rows of corpus.jsonl, by index: name, family, kind, index, seed, width,
    height, num_frames, fps, recipe_version, params (the generator's knobs;
    `window` for cut-outs: zoom, centre start/end in source pixels, motion
    class; `grain` or None), licence, and `source` (the file cut from) for
    photo, image, deb-photo, mix and video clips; `package` ("NAME VERSION") for deb-photo.
  Raises:
    ValueError: a bad size, count, frame count or fps.
    CorpusError: some clips failed (named); the rest are written and listed.
  """
  if width % 2 or height % 2 or width < 16 or height < 16:
    raise ValueError(f"width and height must be even numbers ≥ 16 (yuv420p), got {width}x{height}")
  if count < 1 or num_frames < 1 or not fps > 0:
    raise ValueError(
        f"count, num_frames and fps must be positive, got count={count}, "
        f"num_frames={num_frames}, fps={fps}"
    )
  started = time.perf_counter()
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  for stale in out_dir.glob(".*.partial.mkv"):
    stale.unlink(missing_ok=True)
  rows = [
      _json_roundtrip(row)
      for row in plan_corpus(
          count,
          width=width,
          height=height,
          num_frames=num_frames,
          fps=fps,
          seed=seed,
          image_dirs=image_dirs,
          photo_dirs=photo_dirs,
          real_fraction=real_fraction,
      )
  ]
  log_path = out_dir / PARTIAL_LOG_NAME
  finished = {**_read_rows(out_dir / CORPUS_NAME), **_read_rows(log_path)}
  pending = [
      row
      for row in rows
      if finished.get(row["name"]) != row or not (out_dir / f"{row['name']}.mkv").is_file()
  ]
  by_name = {row["name"]: row for row in pending}
  failures: dict[str, str] = {}
  cpu_seconds = 0.0
  jobs = max(1, min(jobs or os.cpu_count() or 1, len(pending) or 1))
  from tqdm import tqdm

  if pending:
    # fork where there is one: workers start at once and work from any __main__
    # (spawn re-imports it and fails from stdin or a notebook). Workers never
    # touch JAX, so its threads in a parent that imported it do not matter.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with (
        concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool,
        open(log_path, "a") as log,
        tqdm(
            total=len(pending),
            desc="make-corpus",
            unit="clip",
            file=sys.stderr,
            disable=not progress,
            dynamic_ncols=True,
        ) as bar,
    ):
      futures = [pool.submit(_make_clips, batch, str(out_dir)) for batch in _batches(pending)]
      for future in concurrent.futures.as_completed(futures):
        for name, seconds, error in future.result():
          cpu_seconds += seconds
          if error is None:
            log.write(json.dumps(by_name[name]) + "\n")
            log.flush()
          else:
            failures[name] = error
          bar.update(1)
  done = [row for row in rows if row["name"] not in failures]
  _write_atomically(out_dir / CORPUS_NAME, "".join(json.dumps(row) + "\n" for row in done))
  log_path.unlink(missing_ok=True)
  kinds: dict[str, int] = {}
  for row in done:
    kinds[row["kind"]] = kinds.get(row["kind"], 0) + 1
  made = len(pending) - len(failures)
  wall = time.perf_counter() - started
  rate = (
      f", {cpu_seconds / made:.2f} CPU s per clip ({made / cpu_seconds:.2f} clips/s per core)"
      if made and cpu_seconds
      else ""
  )
  print(
      f"make-corpus: {len(done)} clips in {out_dir} ({made} made, {len(done) - made} "
      f"reused, {len(failures)} failed; "
      f"{', '.join(f'{kind} {n}' for kind, n in kinds.items())}; "
      f"{len({row['family'] for row in done})} families) in {wall:.1f} s wall with "
      f"{jobs} jobs{rate}",
      file=sys.stderr,
  )
  if failures:
    raise CorpusError(failures)
  return done

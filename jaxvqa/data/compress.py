"""The paper's training data: each source along a streaming ladder, VMAF-labelled.

    sources/<id>.mkv                    mezzanine: the source normalised once
    sources/<id>.json                   its recipe and facts (sidecar)
    encodes/<id>/<codec>_<kbps>k.<ext>  one encode per (codec, rung) at scale 1
    encodes/<id>/<codec>_<kbps>k_x<s>.<ext>   ... and at scale s < 1 (`--scales`)
    encodes/<id>/<name>.json            its finished record (sidecar)
    manifest.jsonl                      one JSON row per encode (`manifest.MANIFEST_KEYS`)

The work is a plan and one step per element (`jaxvqa.data.make_steps`, resumable, each failure
named), so the thread pool here (`make_dataset`) and the Apache Beam pipeline
(`jaxvqa.beam.make_dataset`) run exactly the same work.

Decisions:
- Rows are sorted by (source, codec, rung). Manifest rows keep `width`, `height` = display size
  (the mezzanine's) and add `scale`, `encode_width`, `encode_height` (the coded size) and
  `bits_per_pixel` = achieved bitrate / (encode_width · encode_height · fps), i.e. on the CODED
  size: what the encoder had per coded pixel. `manifest.read_display_frames` makes the frames VMAF
  judged (lower rungs upscaled back to display size), rgb24, for a trainer.
- Parallel here: one thread pool of `jobs` workers (default: every core), each
  driving one ffmpeg process (the GIL is free while ffmpeg runs). Mezzanines
  run in the pool too, and each source's encodes are queued as soon as its
  mezzanine is ready, so no step waits on another source. Encoders always run
  single-threaded (`encoding.ENCODER_THREADS`); with more pending encodes than cores, one thread
  per process is also the fastest use of the cores. Decoding, the lossless
  mezzanine and libvmaf (whose results do not depend on threads) get
  cores // min(jobs, pending tasks) threads, so a small job still uses every
  core. The CLI ends with one line: sources, encodes made / skipped / failed,
  wall time and encodes per second.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import sys
import time
from collections.abc import Iterable, Sequence

from jaxvqa.data import encoding
from jaxvqa.data import make_steps
from jaxvqa.data.make_steps import EncodeTask, Failure, SourceTask


@dataclasses.dataclass
class MakeDatasetResult:
  rows: list[dict]  # manifest rows, sorted by (source, codec, rung)
  failures: list[Failure]
  num_sources: int = 0  # source files given
  made: int = 0  # encodes made by this run
  skipped: int = 0  # encodes an earlier run had finished (sidecar and file present)
  failed_encodes: int = 0  # encodes that failed (their sources' mezzanines were made)
  failed_sources: int = 0  # sources whose mezzanine could not be made (no encodes tried)
  seconds: float = 0.0  # wall time of the whole job

  def summary(self) -> str:
    """One line: sources, encodes made / skipped / failed, wall time, encodes per second."""
    rate = self.made / self.seconds if self.seconds > 0 else 0.0
    return (
        f"{self.num_sources} sources ({self.failed_sources} failed), encodes: "
        f"{self.made} made, {self.skipped} skipped (already done), {self.failed_encodes} "
        f"failed; {self.seconds:.2f} s wall, {rate:.2f} encodes/s"
    )


# ----------------------------------------------------------------------------- the thread pool


def _progress(total: int, description: str, enabled: bool):
  from tqdm import tqdm

  return tqdm(
      total=total,
      desc=description,
      unit="encode",
      file=sys.stderr,
      disable=not enabled,
      dynamic_ncols=True,
  )


def make_dataset(
    sources: str | os.PathLike | Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    ladder_kbps: Sequence[float],
    codecs: Sequence[str] = ("libx264",),
    jobs: int | None = None,
    *,
    max_frames: int | None = None,
    scale: tuple[int, int] | None = None,
    scales: Sequence[float] = (1.0,),
    progress: bool = True,
) -> MakeDatasetResult:
  """Encodes every source at every (scale, bitrate) and codec and VMAF-labels each encode.

  Args:
    sources: a directory (its video files, by extension) or a list of files.
    out_dir: output root (layout in the module docstring); created if needed.
    ladder_kbps: target bitrates in kb/s.
    codecs: encoder names, keys of `encoding.CODECS`.
    jobs: parallel ffmpeg processes (default: all cores).
    max_frames: cut each source to its first N frames.
    scale: (width, height) of the mezzanines, even numbers.
    scales: resolution factors in (0, 1] of the ladder (1 = the mezzanine's
      size); rung = index in the ladder sorted by (scale, kbps).
    progress: show a tqdm bar on stderr.
  Returns:
    the manifest rows (also written to out_dir/manifest.jsonl), the failures
    (each named; everything else is still made) and the counts and wall time.
  """
  started = time.monotonic()
  job = make_steps.Job.create(
      out_dir, ladder_kbps, codecs, max_frames=max_frames, scale=scale, scales=scales
  )
  if job.out_dir.is_dir():
    make_steps.remove_stale_temporaries(job.out_dir)
  tasks, failures = make_steps.plan_sources(sources, job)
  result = MakeDatasetResult(
      rows=[],
      failures=failures,
      num_sources=len(tasks) + len(failures),
      failed_sources=len(failures),
  )
  cores = os.cpu_count() or 1
  jobs = max(1, jobs or cores)
  with (
      concurrent.futures.ThreadPoolExecutor(jobs) as pool,
      _progress(len(tasks) * job.encodes_per_source, "make-dataset", progress) as bar,
  ):
    try:
      running: dict[concurrent.futures.Future, SourceTask | EncodeTask] = {}

      def threads_now(extra: int) -> int:
        # Tasks that will run at once: what is queued, up to the pool's size.
        return max(1, cores // max(1, min(jobs, len(running) + extra)))

      def queue_encodes(mezzanine: encoding.Mezzanine) -> None:
        pending, finished = make_steps.plan_encodes(mezzanine, job)
        result.rows.extend(finished)
        result.skipped += len(finished)
        bar.update(len(finished))
        for task in pending:
          running[pool.submit(make_steps.make_encode, task, job, threads_now(len(pending)))] = task

      to_make = []
      for task in tasks:
        reused = make_steps.reuse_mezzanine(task, job)
        if reused is not None:
          queue_encodes(reused)
        else:
          to_make.append(task)
      for task in to_make:
        running[pool.submit(make_steps.make_source, task, job, threads_now(len(to_make)))] = task

      while running:
        done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
        for future in done:
          task = running.pop(future)
          try:
            outcome = future.result()
          except Exception as error:  # reported by name; everything else goes on
            if isinstance(task, SourceTask):
              result.failures.append(make_steps.source_failure(task, error))
              result.failed_sources += 1
              bar.update(job.encodes_per_source)
            else:
              result.failures.append(make_steps.encode_failure(task, error))
              result.failed_encodes += 1
              bar.update(1)
            continue
          if isinstance(task, SourceTask):
            queue_encodes(outcome)
          else:
            result.rows.append(outcome)
            result.made += 1
            bar.update(1)
    except KeyboardInterrupt:
      # Queued encodes are dropped, not run: Ctrl-C stops the job after the ones already running
      # (their ffmpeg gets the terminal's SIGINT too), and what they leave half-written goes.
      pool.shutdown(wait=True, cancel_futures=True)
      make_steps.remove_stale_temporaries(job.out_dir)
      raise

  result.rows = make_steps.write_manifest(job.out_dir, result.rows)
  result.failures.sort(key=lambda failure: failure.name)
  result.seconds = time.monotonic() - started
  return result

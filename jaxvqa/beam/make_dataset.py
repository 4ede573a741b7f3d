"""`jaxvqa make-dataset` as an Apache Beam pipeline.

    source tasks ─Reshuffle─▶ mezzanine (made or reused) ─▶ one element per (source, rung, codec)
      ─Reshuffle─▶ encode + VMAF ─▶ rows ─▶ manifest.jsonl + make-dataset-report.json

Every step is the function the thread pool of `jaxvqa.data.compress.make_dataset` runs
(`jaxvqa.data.make_steps`: `make_source`, `plan_encodes`, `make_encode`, `write_manifest`), so
both write the same files, rows and VMAF labels, and either can resume what the other left. A
failed source or encode becomes a named failure (the report, the worker's log and the `failed_*`
counters); the pipeline goes on. A rerun skips every encode whose sidecar matches its recipe, as
the thread pool does.

Encodes are spread over workers one element each (the Reshuffle breaks fusion with the few
mezzanine elements before it). Every worker must see the sources and the output directory at the
same paths (one machine, or a shared file system such as NFS, Filestore or a GCS Fuse mount):
ffmpeg reads and writes files, not Beam's file systems.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Sequence

import apache_beam as beam

from jaxvqa.beam import runners
from jaxvqa.data import compress, make_steps
from jaxvqa.data import manifest

REPORT_NAME = "make-dataset-report.json"  # counts and failures of the last Beam run
_FAILED, _SKIPPED = "failed", "skipped"
_COUNTERS = "jaxvqa.make_dataset"


class _JobStep(beam.DoFn):
  """One step of the job on a task; a task whose step raises becomes a tagged, named failure."""

  KIND = ""  # "source" or "encode": the failure's counter and report entry

  def __init__(self, job: make_steps.Job, threads: int):
    self.job, self.threads = job, threads

  def process(self, task):
    try:
      made = self.make(task)
    except Exception as error:  # noqa: BLE001 — reported by name; the pipeline goes on
      yield beam.pvalue.TaggedOutput(_FAILED, _failed(self.KIND, self.failure(task, error)))
      return
    yield from self.outputs(made)


# The steps below only fill in _JobStep's hooks (make, failure, outputs), alike in shape.
class _MakeSources(_JobStep):
  """A source task → its encode tasks still to make; finished rows and a failure tagged."""

  KIND = "source"

  def make(self, task: make_steps.SourceTask):
    return make_steps.make_source(task, self.job, self.threads)

  def failure(self, task: make_steps.SourceTask, error: Exception) -> make_steps.Failure:
    return make_steps.source_failure(task, error)

  def outputs(self, mezzanine):
    pending, finished = make_steps.plan_encodes(mezzanine, self.job)
    beam.metrics.Metrics.counter(_COUNTERS, "skipped").inc(len(finished))
    for row in finished:
      yield beam.pvalue.TaggedOutput(_SKIPPED, row)
    yield from pending


class _MakeEncodes(_JobStep):
  """An encode task → its manifest row; a failure tagged."""

  KIND = "encode"

  def make(self, task: make_steps.EncodeTask):
    return make_steps.make_encode(task, self.job, self.threads)

  def failure(self, task: make_steps.EncodeTask, error: Exception) -> make_steps.Failure:
    return make_steps.encode_failure(task, error)

  def outputs(self, row):
    beam.metrics.Metrics.counter(_COUNTERS, "made").inc()
    yield row


def _failed(kind: str, failure: make_steps.Failure) -> tuple[str, make_steps.Failure]:
  logging.warning("make-dataset: FAILED %s: %s", failure.name, failure.reason)
  beam.metrics.Metrics.counter(_COUNTERS, f"failed_{kind}s").inc()
  return f"failed_{kind}", failure


def _tagged(value, kind: str) -> tuple[str, object]:
  return kind, value


def _write_outputs(outcomes: list[tuple[str, object]], out_dir) -> None:
  """manifest.jsonl from the rows made and skipped; the report from the counts and failures."""
  kinds = [kind for kind, _ in outcomes]
  make_steps.write_manifest(out_dir, [row for kind, row in outcomes if kind in ("made", "skipped")])
  failures = sorted(
      (value for kind, value in outcomes if kind.startswith("failed")),
      key=lambda failure: failure.name,
  )
  make_steps.write_atomically(
      out_dir / REPORT_NAME,
      json.dumps(
          {
              "made": kinds.count("made"),
              "skipped": kinds.count("skipped"),
              "failed_sources": kinds.count("failed_source"),
              "failed_encodes": kinds.count("failed_encode"),
              "failures": [
                  {"name": failure.name, "reason": failure.reason} for failure in failures
              ],
          }
      ),
  )


def build(
    pipeline: beam.Pipeline,
    tasks: Sequence[make_steps.SourceTask],
    job: make_steps.Job,
    threads: int = 1,
) -> beam.PCollection:
  """Adds make-dataset to `pipeline`: the manifest and report of `tasks` are written at the end.

  threads: ffmpeg decode / VMAF threads per element (encoders always use one).
  """
  sources = pipeline | "Sources" >> beam.Create(list(tasks)) | "SpreadSources" >> beam.Reshuffle()
  planned = sources | "Mezzanines" >> beam.ParDo(_MakeSources(job, threads)).with_outputs(
      _FAILED, _SKIPPED, main="encodes"
  )
  made = (
      planned.encodes
      | "SpreadEncodes" >> beam.Reshuffle()
      | "Encodes" >> beam.ParDo(_MakeEncodes(job, threads)).with_outputs(_FAILED, main="rows")
  )
  outcomes = (
      made.rows | "Made" >> beam.Map(_tagged, "made"),
      planned[_SKIPPED] | "Skipped" >> beam.Map(_tagged, "skipped"),
      planned[_FAILED],
      made[_FAILED],
  ) | "Outcomes" >> beam.Flatten()
  return (
      outcomes
      | "Gather" >> beam.combiners.ToList()
      | "WriteManifest" >> beam.Map(_write_outputs, job.out_dir)
  )


# Its signature (declarative) mirrors compress.make_dataset and make_steps.Job.create.
def make_dataset(
    sources: str | os.PathLike | Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    ladder_kbps: Sequence[float],
    codecs: Sequence[str] = ("libx264",),
    *,
    max_frames: int | None = None,
    scale: tuple[int, int] | None = None,
    scales: Sequence[float] = (1.0,),
    runner: runners.Runner | None = None,
) -> compress.MakeDatasetResult:
  """`compress.make_dataset` (same arguments, same files and rows) run as a Beam pipeline.

  runner: where it runs (`runners.choose`); default the local runner, one worker per core.
  Returns what the pipeline's report says, with the failures found while planning.
  """
  started = time.monotonic()
  runner = runner or runners.choose(None)
  job = make_steps.Job.create(
      out_dir, ladder_kbps, codecs, max_frames=max_frames, scale=scale, scales=scales
  )
  if job.out_dir.is_dir():
    make_steps.remove_stale_temporaries(job.out_dir)
  tasks, planning_failures = make_steps.plan_sources(sources, job)
  (job.out_dir / REPORT_NAME).unlink(missing_ok=True)
  with runner.pipeline() as pipeline:
    build(pipeline, tasks, job, runner.threads_per_element())
  report = json.loads((job.out_dir / REPORT_NAME).read_text())
  failures = planning_failures + [make_steps.Failure(**failure) for failure in report["failures"]]
  return compress.MakeDatasetResult(
      rows=manifest.read_manifest(job.out_dir / manifest.MANIFEST_NAME),
      failures=sorted(failures, key=lambda failure: failure.name),
      num_sources=len(tasks) + len(planning_failures),
      made=report["made"],
      skipped=report["skipped"],
      failed_encodes=report["failed_encodes"],
      failed_sources=len(planning_failures) + report["failed_sources"],
      seconds=time.monotonic() - started,
  )

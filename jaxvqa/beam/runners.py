"""Which Beam runner a pipeline runs on, and with what options.

Without `--runner` the pipeline runs here on Beam's FnApiRunner (what `DirectRunner` falls back
to) with one worker thread per core. Every element of our pipelines is an ffmpeg process or an
XLA call, both of which run outside the GIL, so threads use every core without the seconds of
start-up a worker process costs. `DirectRunner` by name first tries Prism, which downloads its
binary from GitHub; offline it fails over to the same FnApiRunner after that attempt.

With `--runner NAME` (FlinkRunner, SparkRunner, DataflowRunner, PrismRunner, ...) the pipeline is
submitted there with the options given after `--`, which are Beam's own (`--flink_master`,
`--project`, `--temp_location`, ...): they reach `PipelineOptions` unchanged.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.options import pipeline_options
from apache_beam.runners.portability import fn_api_runner


@dataclasses.dataclass(frozen=True)
class Runner:
  """A runner and its options, ready for `beam.Pipeline(runner=..., options=...)`."""

  runner: object  # a runner instance, or None: the one named in `options`
  options: pipeline_options.PipelineOptions
  local_workers: int  # worker threads here; 0 when the pipeline runs elsewhere

  def pipeline(self) -> beam.Pipeline:
    return beam.Pipeline(runner=self.runner, options=self.options)

  def threads_per_element(self) -> int:
    """ffmpeg threads for one element: the cores a local worker has to itself, else 1."""
    if not self.local_workers:
      return 1
    return max(1, (os.cpu_count() or 1) // self.local_workers)


def choose(runner: str | None, beam_args: Sequence[str] = (), workers: int | None = None) -> Runner:
  """The local runner (`workers` threads, default: one per core) unless `runner` or a `--runner`
  among `beam_args` names another.

  Raises ValueError for workers < 1.
  """
  if workers is not None and workers < 1:
    raise ValueError(f"workers must be >= 1, got {workers}")
  named = (
      pipeline_options.PipelineOptions(list(beam_args))
      .view_as(pipeline_options.StandardOptions)
      .runner
  )
  if runner or named:
    flags = ([f"--runner={runner}"] if runner else []) + list(beam_args)
    return Runner(None, pipeline_options.PipelineOptions(flags), 0)
  workers = workers or os.cpu_count() or 1
  # Later flags win: the caller's own --direct_* options override these defaults.
  flags = [f"--direct_num_workers={workers}", "--direct_running_mode=multi_threading", *beam_args]
  return Runner(fn_api_runner.FnApiRunner(), pipeline_options.PipelineOptions(flags), workers)

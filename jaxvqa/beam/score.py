"""Scoring a very large list of video files as an Apache Beam pipeline.

    paths ─Reshuffle─▶ batches ─▶ score (model loaded once per worker process) ─▶ rows
      ─▶ OUTPUT-00000-of-0000N.jsonl ...

Each row is a `jaxvqa score --format jsonl` row (`scoring.score_record` / `failure_record`, the
default sampling: one clip of the model's T frames, no segments), with the same provenance fields
(scale, label source, model id and version, jaxvqa version, frames). It is made from the public API (`jaxvqa.load`, `QualityModel`): a clip is
`QualityModel.load_clip(path)` (what `jaxvqa score` scores), its raw score is the network's on a
batch of the same padded shape `jaxvqa score` uses, and its calibration the run's. A file that
cannot be scored gets a row with `error` = the reason `QualityModel.score_many` (and so
`jaxvqa score`) gives, and the pipeline goes on.

Paths are read as given (names in a list file are UTF-8 text, so they are written unchanged).
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterable, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.utils import shared

from jaxvqa.data import decode
from jaxvqa.scoring.records import failure_record, score_record
from jaxvqa.scoring.results import ScoreFailure, VideoScore

_COUNTERS = "jaxvqa.score"


class _Model:
  """The loaded model, its provenance, and a handle `shared.Shared` can weakly refer to."""

  def __init__(self, workdir: str, which: str, ema: bool):
    import jaxvqa
    from jaxvqa.scoring.provenance import Provenance

    self.quality = jaxvqa.load(workdir, which=which, ema=ema)
    self.provenance = Provenance.of(self.quality.trained)


class _ScoreBatches(beam.DoFn):
  """A batch of paths → one row per path."""

  def __init__(self, workdir: str, which: str, ema: bool, handle: shared.Shared):
    self.workdir, self.which, self.ema, self.handle = workdir, which, ema, handle
    self.model: _Model | None = None

  def setup(self):
    # One model per worker process, whatever number of threads run this DoFn there.
    self.model = self.handle.acquire(lambda: _Model(self.workdir, self.which, self.ema))

  def process(self, paths: Sequence[str]):
    clips, scored = [], []
    for path in paths:
      clip = _clip_or_none(self.model.quality, path)
      if clip is None:
        yield self._failure_row(path)
      else:
        clips.append(clip)
        scored.append(path)
    if not scored:
      return
    trained = self.model.quality.trained
    raw = trained.raw_scores(np.stack(clips))
    calibrated = trained.calibrate(raw)
    sampling = self.model.provenance.sampling
    for path, raw_score, score in zip(scored, raw, calibrated):
      info = decode.probe(path)
      beam.metrics.Metrics.counter(_COUNTERS, "scored").inc()
      indices = tuple(int(i) for i in sampling.whole_video_indices(info.num_frames))
      result = VideoScore(
          path=path,
          score=float(score),
          raw_score=float(raw_score),
          num_frames=info.num_frames,
          fps=float(info.fps),
          frame_indices=indices,
      )
      yield score_record(result, self.model.provenance)

  def _failure_row(self, path: str) -> dict[str, Any]:
    # score_many checks a file before opening it (a FIFO would block a decoder) and says why
    # it cannot be scored in jaxvqa score's words.
    quality = self.model.quality
    quality.score_many([path], workers=1)
    reason = quality.last_errors.get(path, "could not be scored")
    logging.warning("score: %s: %s", path, reason)
    beam.metrics.Metrics.counter(_COUNTERS, "failed").inc()
    return failure_record(ScoreFailure(path, reason), self.model.provenance)


def _clip_or_none(quality, path: str) -> np.ndarray | None:
  """The model-input clip of a regular, decodable file; None for anything else."""
  try:
    if not stat.S_ISREG(os.stat(path).st_mode):
      return None
    return quality.load_clip(path)
  except Exception:  # noqa: BLE001 — the reason is asked for again in _failure_row
    return None


def json_line(row: dict[str, Any]) -> str:
  return json.dumps(row, allow_nan=False)


def build(
    pipeline: beam.Pipeline,
    paths: beam.PCollection | Iterable[str],
    workdir: str,
    *,
    output: str,
    which: str = "best",
    ema: bool = True,
    batch_size: int = 8,
    num_shards: int = 0,
) -> beam.PCollection:
  """Adds scoring of `paths` (a PCollection of path strings, or a list) to `pipeline`.

  output: the shards' prefix: OUTPUT-00000-of-0000N.jsonl (on any Beam file system).
  batch_size: files per model call; num_shards: 0 lets the runner choose.
  Returns the PCollection of the shard names written.
  """
  if not isinstance(paths, beam.PCollection):
    paths = pipeline | "Paths" >> beam.Create(list(paths))
  return (
      paths
      | "Spread" >> beam.Reshuffle()
      | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=batch_size)
      | "Score" >> beam.ParDo(_ScoreBatches(os.fspath(workdir), which, ema, shared.Shared()))
      | "Json" >> beam.Map(json_line)
      | "Write" >> beam.io.WriteToText(output, file_name_suffix=".jsonl", num_shards=num_shards)
  )


def read_rows(output: str) -> list[dict[str, Any]]:
  """Every row of the shards OUTPUT-*.jsonl (any Beam file system), in no particular order."""
  from apache_beam.io.filesystems import FileSystems

  rows = []
  for match in FileSystems.match([f"{output}-*.jsonl"])[0].metadata_list:
    with FileSystems.open(match.path) as file:
      rows.extend(json.loads(line) for line in file.read().decode().splitlines() if line.strip())
  return rows

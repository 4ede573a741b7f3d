"""Scoring video files with a trained run, on the label's scale (what `jaxvqa score` runs).

    PATH... ──find_videos──▶ files (directories walked for video extensions, globs expanded)
      ──file_problem──▶ FIFOs, devices, unreadable files and symlink loops reported, never opened
      ──decode pool (threads)──▶ clips uint8 [T, S, S, 3], K + M per file (`sampling`: the
                                 whole video's K = N / T clips for --frames N, then M segments;
                                 with --display-size W×H each file's frames at W×H first, as a
                                 ladder's rungs were made for training: `decoding`)
      ──fixed-size batches──▶ TrainedModel.dispatch (jitted, sharded over all devices)
      ──mean of the K, calibration──▶ one score per file (+ one per segment, and their pooled
                                      mean, harmonic mean, min, max, p5: `pooling`)
      ──as each is made──▶ FILE.partial (one JSON line, flushed) ──at the end──▶ FILE (atomic)

Decoding overlaps the model: decode workers run ahead of the batch being scored (decord and PIL
release the GIL), and batch k+1 is dispatched before the scores of batch k are fetched.

A clip is sampled exactly as evaluation samples it (`video.sample_frame_indices` with
train=False: each segment's centre frame; then resize + centre crop, or fragments at cell
centres), so a file scores what `eval.py` reports for the same file (with the default --frames).
Segments (N equal parts, S-second windows of the stream's timestamps, or one per sampled frame)
are sampled the same way inside their range; their times in seconds come from the stream's
timestamps (variable frame rates included). `sampling` says which frames each score reads.

Files that cannot be scored (missing, unreadable, not a regular file, zero bytes, truncated, not a
video, unknown codec) and directories that cannot be searched are reported on stderr with their
name and the reason; the others are still scored.

Output safety (`OutputFile`): FILE is checked before anything is scored (not a directory, not one
of the inputs, its directory exists and is writable); every result is appended to FILE.partial as
it is made, so a killed run keeps what it scored and `--resume` scores only the rest (with the same
model: each row names it by `TrainedModel.identity`); FILE itself is written once, at the end,
through a temporary file and an atomic rename, so it is never half-written.

Modules, in the order of the flow: `discovery` (files), `sampling` (which frames), `decoding`
(clips), `batches` (the model), `pooling` (statistics of the segments), `provenance` (what produced
the scores: model, version, scale, label source, display size), `records` (rows and output
formats), `output_file` (--output FILE); `names` and `results` hold what they share. The command
line is `jaxvqa.commands.score`.

The names below load their module on first use: the command's parser reads `records.FORMATS`
without importing JAX, which `batches` needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
  from jaxvqa.scoring.batches import score_videos
  from jaxvqa.scoring.decoding import DecodedVideo, check_display_size, decode_video, stream_video
  from jaxvqa.scoring.discovery import file_problem, find_videos
  from jaxvqa.scoring.names import escape_name, printable_name
  from jaxvqa.scoring.output_file import PARTIAL_SUFFIX, OutputError, OutputFile, check_output
  from jaxvqa.scoring.pooling import POOLED_STATISTICS, pool_scores
  from jaxvqa.scoring.provenance import Provenance, label_source, scale_description
  from jaxvqa.scoring.records import FORMATS, FORMATTERS, STREAMED_FORMATS, RowStream, failure_record, score_from_record, score_record, write_text
  from jaxvqa.scoring.results import ScoreFailure, SegmentScore, VideoScore
  from jaxvqa.scoring.sampling import Sampling, segment_bounds, seconds_bounds

_MODULE_OF = {
    "score_videos": "batches",
    "DecodedVideo": "decoding",
    "decode_video": "decoding",
    "stream_video": "decoding",
    "check_display_size": "decoding",
    "segment_bounds": "sampling",
    "seconds_bounds": "sampling",
    "Sampling": "sampling",
    "POOLED_STATISTICS": "pooling",
    "pool_scores": "pooling",
    "label_source": "provenance",
    "file_problem": "discovery",
    "find_videos": "discovery",
    "escape_name": "names",
    "printable_name": "names",
    "PARTIAL_SUFFIX": "output_file",
    "OutputError": "output_file",
    "OutputFile": "output_file",
    "check_output": "output_file",
    "FORMATS": "records",
    "FORMATTERS": "records",
    "STREAMED_FORMATS": "records",
    "Provenance": "provenance",
    "RowStream": "records",
    "failure_record": "records",
    "scale_description": "provenance",
    "score_from_record": "records",
    "score_record": "records",
    "write_text": "records",
    "ScoreFailure": "results",
    "SegmentScore": "results",
    "VideoScore": "results",
}
__all__ = [
    "DecodedVideo",
    "FORMATS",
    "FORMATTERS",
    "OutputError",
    "OutputFile",
    "PARTIAL_SUFFIX",
    "POOLED_STATISTICS",
    "Provenance",
    "RowStream",
    "STREAMED_FORMATS",
    "Sampling",
    "ScoreFailure",
    "SegmentScore",
    "VideoScore",
    "check_display_size",
    "check_output",
    "decode_video",
    "escape_name",
    "failure_record",
    "file_problem",
    "find_videos",
    "label_source",
    "pool_scores",
    "printable_name",
    "scale_description",
    "score_from_record",
    "score_record",
    "score_videos",
    "seconds_bounds",
    "segment_bounds",
    "stream_video",
    "write_text",
]


def __getattr__(name: str):
  if name not in _MODULE_OF:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
  globals()[name] = value
  return value


def __dir__() -> list[str]:
  return sorted([*globals(), *_MODULE_OF])

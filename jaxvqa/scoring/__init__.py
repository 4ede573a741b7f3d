"""Scoring video files with a trained run, on the label's scale (what `jaxvqa score` runs).

    PATH... ──find_videos──▶ files (directories walked for video extensions, globs expanded)
      ──file_problem──▶ FIFOs, devices, unreadable files and symlink loops reported, never opened
      ──decode pool (threads)──▶ clips uint8 [1 + N, T, S, S, 3] per file
                                 (the whole video, then N temporal segments when --segments N)
      ──fixed-size batches──▶ TrainedModel.dispatch (jitted, sharded over all devices)
      ──calibration──▶ one score per file (+ one per segment)
      ──as each is made──▶ FILE.partial (one JSON line, flushed) ──at the end──▶ FILE (atomic)

Decoding overlaps the model: decode workers run ahead of the batch being scored (decord and PIL
release the GIL), and batch k+1 is dispatched before the scores of batch k are fetched.

A clip is sampled exactly as evaluation samples it (`video.sample_frame_indices` with
train=False: each segment's centre frame; then resize + centre crop, or fragments at cell
centres), so a file scores what `eval.py` reports for the same file. Segment s of N covers the
frames [⌊s·F/N⌋, ⌊(s+1)·F/N⌋) of an F-frame video and is sampled the same way inside that range;
its times in seconds come from the stream's timestamps (variable frame rates included).

Files that cannot be scored (missing, unreadable, not a regular file, zero bytes, truncated, not a
video, unknown codec) and directories that cannot be searched are reported on stderr with their
name and the reason; the others are still scored.

Output safety (`OutputFile`): FILE is checked before anything is scored (not a directory, not one
of the inputs, its directory exists and is writable); every result is appended to FILE.partial as
it is made, so a killed run keeps what it scored and `--resume` scores only the rest (with the same
model: each row names it by `TrainedModel.identity`); FILE itself is written once, at the end,
through a temporary file and an atomic rename, so it is never half-written.

Modules, in the order of the flow: `discovery` (files), `decoding` (clips), `batches` (the model),
`records` (rows and output formats), `output_file` (--output FILE); `names` and `results` hold
what they share. The command line is `jaxvqa.commands.score`.

The names below load their module on first use: the command's parser reads `records.FORMATS`
without importing JAX, which `batches` needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
  from jaxvqa.scoring.batches import score_videos
  from jaxvqa.scoring.decoding import DecodedVideo, decode_video, segment_bounds
  from jaxvqa.scoring.discovery import file_problem, find_videos
  from jaxvqa.scoring.names import escape_name, printable_name
  from jaxvqa.scoring.output_file import PARTIAL_SUFFIX, OutputError, OutputFile, check_output
  from jaxvqa.scoring.records import FORMATS, FORMATTERS, STREAMED_FORMATS, Provenance, RowStream, failure_record, scale_description, score_from_record, score_record, write_text
  from jaxvqa.scoring.results import ScoreFailure, SegmentScore, VideoScore

_MODULE_OF = {
    "score_videos": "batches",
    "DecodedVideo": "decoding",
    "decode_video": "decoding",
    "segment_bounds": "decoding",
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
    "Provenance": "records",
    "RowStream": "records",
    "failure_record": "records",
    "scale_description": "records",
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
    "Provenance",
    "RowStream",
    "STREAMED_FORMATS",
    "ScoreFailure",
    "SegmentScore",
    "VideoScore",
    "check_output",
    "decode_video",
    "escape_name",
    "failure_record",
    "file_problem",
    "find_videos",
    "printable_name",
    "scale_description",
    "score_from_record",
    "score_record",
    "score_videos",
    "segment_bounds",
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

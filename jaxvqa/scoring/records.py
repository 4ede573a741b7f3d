"""Scores as rows and documents: what produced them (`Provenance`), JSON lines, CSV, JSON, a table.

Every row carries its model's identity, so a row cut out of its file still says what produced it
and `--resume` can tell one model's rows from another's. JSON has no NaN: it is written as null.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from jaxvqa import strict_json
from jaxvqa.scoring.names import escape_name, printable_name, spreadsheet_text
from jaxvqa.scoring.results import ScoreFailure, SegmentScore, VideoScore

if TYPE_CHECKING:
  from jaxvqa.inference import TrainedModel

FORMATS = ("table", "csv", "json", "jsonl")
STREAMED_FORMATS = ("csv", "jsonl")  # written row by row to stdout as results are made
# What each data builder's labels are (jaxvqa.data.builders.BUILDERS; not imported: it needs
# TFDS, which inference machines lack). A calibrated score is on this scale.
LABEL_SCALES = {
    "compressed": "VMAF (0-100)",
    "konvid_1k": "MOS (1-5)",
    "live_vqc": "MOS (0-100)",
    "youtube_ugc": "MOS (1-5)",
    "lsvq": "MOS (0-100)",
}


def scale_description(trained: TrainedModel) -> str:
  """What a score means: the label scale and its calibration, or that it is raw model output."""
  builder = trained.config.data.get("builder", "")
  label = LABEL_SCALES.get(builder, f"the labels of data set {builder!r}")
  if trained.calibration is None:
    return (
        f"raw model output, uncalibrated (not {label}): the {trained.checkpoint.which} "
        "checkpoint carries no calibration; use --which best for scores on the label scale"
    )
  return (
      f"{label}, calibrated on the validation split: label scale "
      f"(calibration: {trained.calibration.describe()})"
  )


@dataclasses.dataclass(frozen=True)
class Provenance:
  """What produced a set of scores; every output format carries it."""

  model: str  # architecture and input in one line (TrainedModel.describe)
  model_id: str  # TrainedModel.identity: equal exactly when the scores would be
  model_config: dict[str, Any]
  checkpoint: dict[str, Any]  # inference.CheckpointInfo.to_dict()
  calibration: dict[str, Any] | None
  scale: str  # scale_description

  @classmethod
  def of(cls, trained: TrainedModel) -> Provenance:
    return cls(
        model=trained.describe(),
        model_id=trained.identity,
        model_config=trained.config.model.to_dict(),
        checkpoint=trained.checkpoint.to_dict(),
        calibration=(trained.calibration.to_dict() if trained.calibration is not None else None),
        scale=scale_description(trained),
    )

  def row_fields(self) -> dict[str, Any]:
    """Repeated on every CSV and JSON-lines row, so a row cut out of its file still says what
    produced it and `--resume` can tell one model's rows from another's."""
    return {
        "scale": self.scale,
        "model_id": self.model_id,
        "checkpoint": self.checkpoint["path"],
        "step": self.checkpoint["step"],
        "model": self.model,
    }


# ----------------------------------------------------------------------------- rows


def _video_fields(score: VideoScore) -> dict[str, Any]:
  """A score as JSON: the name escaped, NaN as null."""
  return strict_json.finite_or_null(
      {
          "path": escape_name(score.path),
          "score": score.score,
          "raw_score": score.raw_score,
          "num_frames": score.num_frames,
          "fps": score.fps,
          "segments": [dataclasses.asdict(segment) for segment in score.segments],
      }
  )


def score_record(score: VideoScore, provenance: Provenance) -> dict[str, Any]:
  """One scored file as a JSON-lines row (the rows of FILE.partial and of --format jsonl)."""
  return {**_video_fields(score), "error": None, **provenance.row_fields()}


def failure_record(failure: ScoreFailure, provenance: Provenance) -> dict[str, Any]:
  return {
      "path": escape_name(failure.path),
      "score": None,
      "raw_score": None,
      "num_frames": None,
      "fps": None,
      "segments": [],
      "error": failure.reason,
      **provenance.row_fields(),
  }


def _records(
    scores: Sequence[VideoScore], failures: Sequence[ScoreFailure], provenance: Provenance
) -> list[dict[str, Any]]:
  return [score_record(score, provenance) for score in scores] + [
      failure_record(failure, provenance) for failure in failures
  ]


def score_from_record(record: dict[str, Any]) -> VideoScore:
  """The inverse of `score_record` (the path stays escaped; `escape_name` leaves it as it is)."""

  def number(value: Any) -> float:
    return math.nan if value is None else float(value)

  return VideoScore(
      path=str(record["path"]),
      score=number(record["score"]),
      raw_score=number(record["raw_score"]),
      num_frames=int(record["num_frames"]),
      fps=number(record["fps"]),
      segments=tuple(
          SegmentScore(
              start_frame=int(segment["start_frame"]),
              end_frame=int(segment["end_frame"]),
              start_seconds=number(segment["start_seconds"]),
              end_seconds=number(segment["end_seconds"]),
              score=number(segment["score"]),
              raw_score=number(segment["raw_score"]),
          )
          for segment in record["segments"]
      ),
  )


def json_line(record: dict[str, Any]) -> str:
  # ASCII only (ensure_ascii): escaped names and all, a row survives any encoding on the way.
  return strict_json.dumps(record) + "\n"


def _csv_columns(num_segments: int) -> list[str]:
  return [
      "path",
      "score",
      "raw_score",
      "num_frames",
      "fps",
      *(f"segment_{s + 1}" for s in range(num_segments)),
      "error",
      "scale",
      "model_id",
      "checkpoint",
      "step",
      "model",
  ]


def _csv_cells(record: dict[str, Any], num_segments: int) -> dict[str, str]:
  """A row's CSV cells: numbers at full precision, text cells safe from spreadsheet formulas."""

  def number(value: Any) -> str:
    return "" if value is None else repr(value)

  cells = {key: number(record[key]) for key in ("score", "raw_score", "num_frames", "fps", "step")}
  cells.update(
      {
          key: spreadsheet_text(str(record[key] or ""))
          for key in ("path", "error", "scale", "model_id", "checkpoint", "model")
      }
  )
  for s, segment in enumerate(record["segments"][:num_segments]):
    cells[f"segment_{s + 1}"] = number(segment["score"])
  return cells


def _csv_text(records: Iterable[dict[str, Any]], num_segments: int, *, header: bool) -> str:
  buffer = io.StringIO()
  # The csv module's own line end, "\r\n", on purpose: a cell holding "\r" or "\n" is quoted only
  # when that character belongs to the line end (with "\n" alone, a name with "\r" split its row).
  writer = csv.DictWriter(buffer, fieldnames=_csv_columns(num_segments))
  if header:
    writer.writeheader()
  writer.writerows(_csv_cells(record, num_segments) for record in records)
  return buffer.getvalue()


# ----------------------------------------------------------------------------- output formats


def format_json(
    scores: Sequence[VideoScore],
    failures: Sequence[ScoreFailure],
    provenance: Provenance,
    num_segments: int,
) -> str:
  document = {
      "model": provenance.model,
      "model_id": provenance.model_id,
      "model_config": provenance.model_config,
      "checkpoint": provenance.checkpoint,
      "calibration": provenance.calibration,
      "scale": provenance.scale,
      "segments": num_segments,
      "videos": [
          {
              key: value
              for key, value in _video_fields(s).items()
              if num_segments or key != "segments"
          }
          for s in scores
      ],
      "failures": [
          {"path": escape_name(failure.path), "reason": failure.reason} for failure in failures
      ],
  }
  return strict_json.dumps(document, indent=2) + "\n"


def format_jsonl(
    scores: Sequence[VideoScore],
    failures: Sequence[ScoreFailure],
    provenance: Provenance,
    num_segments: int,
) -> str:
  """One JSON object per file (`score_record`, `failure_record`), each naming its model."""
  del num_segments  # every row carries its own segments
  return "".join(json_line(record) for record in _records(scores, failures, provenance))


def format_csv(
    scores: Sequence[VideoScore],
    failures: Sequence[ScoreFailure],
    provenance: Provenance,
    num_segments: int,
) -> str:
  """One row per file (failed files too, with `error` set); the scale, model and checkpoint on
  every row, so a CSV still says what produced it after being concatenated or cut."""
  return _csv_text(_records(scores, failures, provenance), num_segments, header=True)


def format_table(
    scores: Sequence[VideoScore],
    failures: Sequence[ScoreFailure],
    provenance: Provenance,
    num_segments: int,
) -> str:
  checkpoint = provenance.checkpoint
  header = [
      f"model:       {provenance.model} [{provenance.model_id}]",
      f"checkpoint:  {checkpoint['path']} (step {checkpoint['step']}, {checkpoint['which']}, "
      f"{checkpoint['weights']} weights)",
      f"scores:      {provenance.scale}",
      "",
  ]
  titles = ["score", *(f"seg {s + 1}" for s in range(num_segments)), "file"]
  rows = [
      [
          f"{s.score:.3f}",
          *(f"{segment.score:.3f}" for segment in s.segments),
          printable_name(s.path),
      ]
      for s in scores
  ]
  rows += [
      [
          "-",
          *("-" for _ in range(num_segments)),
          f"{printable_name(failure.path)}  (failed: {printable_name(failure.reason)})",
      ]
      for failure in failures
  ]
  widths = [max(len(row[i]) for row in [titles, *rows]) for i in range(len(titles) - 1)]

  def line(cells: list[str]) -> str:
    return "  ".join([*(cell.rjust(width) for cell, width in zip(cells, widths)), cells[-1]])

  rule = "  ".join(["-" * width for width in widths] + ["-" * 4])
  return "\n".join(header + [line(titles), rule] + [line(row) for row in rows]) + "\n"


FORMATTERS = {"table": format_table, "csv": format_csv, "json": format_json, "jsonl": format_jsonl}


def write_text(stream: TextIO, text: str) -> None:
  """Writes to a stream whatever its encoding (stdout may be ASCII): what the encoding cannot hold
  goes out as backslash escapes rather than as a UnicodeEncodeError after all the scoring."""
  encoding = getattr(stream, "encoding", None) or "utf-8"
  stream.write(text.encode(encoding, "backslashreplace").decode(encoding))
  stream.flush()


class RowStream:
  """--format csv or jsonl written to a stream (stdout, a pipe, a device) row by row as results
  are made, so a consumer sees each score at once and a killed run has written all it scored."""

  def __init__(self, stream: TextIO, output_format: str, num_segments: int):
    if output_format not in STREAMED_FORMATS:
      raise ValueError(f"{output_format!r} cannot be streamed; streamed: {STREAMED_FORMATS}")
    self.stream, self.format, self.num_segments = stream, output_format, num_segments
    if output_format == "csv":
      write_text(stream, _csv_text([], num_segments, header=True))

  def write(self, record: dict[str, Any]) -> None:
    write_text(
        self.stream,
        json_line(record)
        if self.format == "jsonl"
        else _csv_text([record], self.num_segments, header=False),
    )

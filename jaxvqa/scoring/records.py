"""Scores as rows and documents: JSON lines, CSV, JSON, VMAF-like JSON, a table.

Every row carries what produced it (`provenance.Provenance`: model, version, scale, label source,
frames, display size), so a row cut out of its file still says what produced it and `--resume`
can tell one model's rows from another's. JSON has no NaN: it is written as null.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from jaxvqa import strict_json
from jaxvqa.scoring.names import escape_name, printable_name, spreadsheet_text
from jaxvqa.scoring.pooling import POOLED_STATISTICS, pool_scores
from jaxvqa.scoring.provenance import Provenance, decoded_at
from jaxvqa.scoring.results import ScoreFailure, ScoreWarning, SegmentScore, VideoScore
from jaxvqa.scoring.sampling import Sampling

FORMATS = ("table", "csv", "json", "jsonl", "vmaf-json")
STREAMED_FORMATS = ("csv", "jsonl")  # written row by row to stdout as results are made
VMAF_METRIC = "jaxvqa"  # the metric's name in --format vmaf-json, as "vmaf" is in libvmaf's


# ----------------------------------------------------------------------------- rows


def _video_fields(score: VideoScore) -> dict[str, Any]:
  """A score as JSON: the name escaped, NaN as null; `pooled` over the segment scores."""
  return strict_json.finite_or_null(
      {
          "path": escape_name(score.path),
          "score": score.score,
          "raw_score": score.raw_score,
          "num_frames": score.num_frames,
          "fps": score.fps,
          "segments": [dataclasses.asdict(segment) for segment in score.segments],
          "frame_indices": list(score.frame_indices),
          "pooled": pool_scores([segment.score for segment in score.segments]),
          "warnings": [dataclasses.asdict(warning) for warning in score.warnings],
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
      "frame_indices": None,
      "pooled": None,
      "warnings": [],
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
              frame=int(segment["frame"]),
          )
          for segment in record["segments"]
      ),
      frame_indices=tuple(int(index) for index in record["frame_indices"]),
      # Rows written before the validity check have no warnings.
      warnings=tuple(
          ScoreWarning(str(warning["name"]), str(warning["detail"]))
          for warning in record.get("warnings", ())
      ),
  )


def json_line(record: dict[str, Any]) -> str:
  # ASCII only (ensure_ascii): escaped names and all, a row survives any encoding on the way.
  return strict_json.dumps(record) + "\n"


# ----------------------------------------------------------------------------- CSV

_CSV_TEXT = ("path", "error", "scale", "model_id", "checkpoint", "model", "segmented_by")
_CSV_TEXT += ("label_source", "model_version", "jaxvqa_version", "display_size", "warnings")
_CSV_NUMBERS = ("score", "raw_score", "num_frames", "fps", "step", "frames")


def _segment_columns(sampling: Sampling) -> list[str]:
  """segment_1 … segment_N when every video has N segments; one `segment_scores` cell (the scores
  separated by spaces) when cutting by seconds gives each video its own count."""
  count = sampling.fixed_segment_count
  if count is None:
    return ["segment_scores"]
  return [f"segment_{s + 1}" for s in range(count)]


def _csv_columns(sampling: Sampling) -> list[str]:
  # The columns of earlier versions first, in their order; the new ones after them.
  return [
      "path",
      "score",
      "raw_score",
      "num_frames",
      "fps",
      *_segment_columns(sampling),
      "error",
      "scale",
      "model_id",
      "checkpoint",
      "step",
      "model",
      "frames",
      "frame_indices",
      "segmented_by",
      *(f"pooled_{statistic}" for statistic in POOLED_STATISTICS),
      "label_source",
      "model_version",
      "jaxvqa_version",
      "display_size",
      "warnings",
  ]


def warnings_text(warnings: Iterable[dict[str, str]]) -> str:
  """A row's warnings in one line: "name: detail; name: detail" ("" when none)."""
  return "; ".join(f"{warning['name']}: {warning['detail']}" for warning in warnings)


def _number_cell(value: Any) -> str:
  return "" if value is None else repr(value)


def _csv_cells(record: dict[str, Any], sampling: Sampling) -> dict[str, str]:
  """A row's CSV cells: numbers at full precision, text cells safe from spreadsheet formulas."""
  cells = {key: _number_cell(record[key]) for key in _CSV_NUMBERS}
  record = {**record, "warnings": warnings_text(record.get("warnings") or ())}
  cells.update({key: spreadsheet_text(str(record[key] or "")) for key in _CSV_TEXT})
  cells["frame_indices"] = " ".join(str(index) for index in record["frame_indices"] or ())
  pooled = record["pooled"] or {}
  for statistic in POOLED_STATISTICS:
    cells[f"pooled_{statistic}"] = _number_cell(pooled.get(statistic))
  scores = [segment["score"] for segment in record["segments"]]
  if sampling.fixed_segment_count is None:
    cells["segment_scores"] = " ".join("nan" if s is None else repr(s) for s in scores)
  else:
    cells.update({f"segment_{s + 1}": _number_cell(score) for s, score in enumerate(scores)})
  return cells


def _csv_text(records: Iterable[dict[str, Any]], sampling: Sampling, *, header: bool) -> str:
  buffer = io.StringIO()
  # The csv module's own line end, "\r\n", on purpose: a cell holding "\r" or "\n" is quoted only
  # when that character belongs to the line end (with "\n" alone, a name with "\r" split its row).
  writer = csv.DictWriter(buffer, fieldnames=_csv_columns(sampling))
  if header:
    writer.writeheader()
  writer.writerows(_csv_cells(record, sampling) for record in records)
  return buffer.getvalue()


# ----------------------------------------------------------------------------- output formats


def _document_fields(provenance: Provenance) -> dict[str, Any]:
  """What produced the scores, at the top of the JSON documents."""
  return {
      "model": provenance.model,
      "model_id": provenance.model_id,
      "model_version": provenance.model_version,
      "model_config": provenance.model_config,
      "checkpoint": provenance.checkpoint,
      "calibration": provenance.calibration,
      "scale": provenance.scale,
      "label_source": provenance.label_source,
      "jaxvqa_version": provenance.jaxvqa_version,
      "frames": provenance.sampling.frames,
      "clip_frames": provenance.sampling.clip_length,
      "segmented_by": provenance.sampling.segmented_by,
      "segments": provenance.sampling.fixed_segment_count,
      "display_size": provenance.display_size_text,
  }


def _failure_entries(failures: Sequence[ScoreFailure]) -> list[dict[str, str]]:
  return [{"path": escape_name(failure.path), "reason": failure.reason} for failure in failures]


def format_json(
    scores: Sequence[VideoScore], failures: Sequence[ScoreFailure], provenance: Provenance
) -> str:
  segmented = provenance.sampling.segmented_by is not None
  document = {
      **_document_fields(provenance),
      "videos": [
          {
              key: value
              for key, value in _video_fields(s).items()
              if segmented or key not in ("segments", "pooled")
          }
          for s in scores
      ],
      "failures": _failure_entries(failures),
  }
  return strict_json.dumps(document, indent=2) + "\n"


def _vmaf_document(score: VideoScore, provenance: Provenance) -> dict[str, Any]:
  """One file as libvmaf's JSON log has it: frames → metrics, pooled_metrics, aggregate_metrics."""
  fields = _video_fields(score)
  return {
      "path": fields["path"],
      "version": provenance.jaxvqa_version,
      "model": provenance.model_version,
      "fps": fields["fps"],
      "num_frames": fields["num_frames"],
      "frame_indices": fields["frame_indices"],
      "warnings": fields["warnings"],
      "frames": [
          {
              "frameNum": segment["frame"],
              "metrics": {
                  VMAF_METRIC: segment["score"],
                  f"{VMAF_METRIC}_raw": segment["raw_score"],
              },
          }
          for segment in fields["segments"]
      ],
      "pooled_metrics": {VMAF_METRIC: fields["pooled"]} if fields["pooled"] else {},
      "aggregate_metrics": {
          VMAF_METRIC: fields["score"],
          f"{VMAF_METRIC}_raw": fields["raw_score"],
      },
  }


def format_vmaf_json(
    scores: Sequence[VideoScore], failures: Sequence[ScoreFailure], provenance: Provenance
) -> str:
  """One document for the run: what produced the scores, then each file as libvmaf's JSON log
  lays one out (`frames`: one entry per segment, at its centre frame; `pooled_metrics` over them;
  `aggregate_metrics`: the whole-video score)."""
  document = {
      "version": provenance.jaxvqa_version,
      **_document_fields(provenance),
      "videos": [_vmaf_document(score, provenance) for score in scores],
      "failures": _failure_entries(failures),
  }
  return strict_json.dumps(document, indent=2) + "\n"


def format_jsonl(
    scores: Sequence[VideoScore], failures: Sequence[ScoreFailure], provenance: Provenance
) -> str:
  """One JSON object per file (`score_record`, `failure_record`), each naming its model."""
  return "".join(json_line(record) for record in _records(scores, failures, provenance))


def format_csv(
    scores: Sequence[VideoScore], failures: Sequence[ScoreFailure], provenance: Provenance
) -> str:
  """One row per file (failed files too, with `error` set); the scale, model and checkpoint on
  every row, so a CSV still says what produced it after being concatenated or cut."""
  return _csv_text(_records(scores, failures, provenance), provenance.sampling, header=True)


def _table_header(provenance: Provenance) -> list[str]:
  checkpoint, sampling = provenance.checkpoint, provenance.sampling
  clips = f"{sampling.num_clips} clip{'s' if sampling.num_clips > 1 else ''}"
  segments = (
      "none"
      if sampling.segmented_by is None
      else f"{sampling.segmented_by} (pooled over them: mean, harmonic mean, min, max, p5)"
  )
  return [
      f"model:       {provenance.model_version}: {provenance.model} [{provenance.model_id}]",
      f"checkpoint:  {checkpoint['path']} (step {checkpoint['step']}, {checkpoint['which']}, "
      f"{checkpoint['weights']} weights)",
      f"scores:      {provenance.scale}",
      f"labels:      {provenance.label_source}",
      f"frames:      {sampling.frames} per video ({clips} of {sampling.clip_length})",
      f"segments:    {segments}",
      f"decoded:     {decoded_at(provenance.display_size_text)}",
      f"jaxvqa:      {provenance.jaxvqa_version}",
      "",
  ]


def format_table(
    scores: Sequence[VideoScore], failures: Sequence[ScoreFailure], provenance: Provenance
) -> str:
  sampling = provenance.sampling
  num_columns = sampling.segments  # one column per segment only for --segments N
  pooled = ("mean", "harmonic_mean", "min", "p5") if sampling.segmented_by else ()
  titles = [
      "score",
      *(f"seg {s + 1}" for s in range(num_columns)),
      *({"harmonic_mean": "hmean"}.get(name, name) for name in pooled),
      "file",
  ]

  def value(number: float | None) -> str:
    return "-" if number is None else f"{number:.3f}"

  rows = []
  for s in scores:
    statistics = pool_scores([segment.score for segment in s.segments]) or {}
    rows.append(
        [
            value(s.score),
            *(value(segment.score) for segment in s.segments[:num_columns]),
            *(value(statistics.get(name)) for name in pooled),
            printable_name(s.path)
            + (f"  (warning: {', '.join(w.name for w in s.warnings)})" if s.warnings else ""),
        ]
    )
  rows += [
      [
          *("-" for _ in titles[:-1]),
          f"{printable_name(failure.path)}  (failed: {printable_name(failure.reason)})",
      ]
      for failure in failures
  ]
  widths = [max(len(row[i]) for row in [titles, *rows]) for i in range(len(titles) - 1)]

  def line(cells: list[str]) -> str:
    return "  ".join([*(cell.rjust(width) for cell, width in zip(cells, widths)), cells[-1]])

  rule = "  ".join(["-" * width for width in widths] + ["-" * 4])
  header = _table_header(provenance)
  return "\n".join(header + [line(titles), rule] + [line(row) for row in rows]) + "\n"


FORMATTERS = {
    "table": format_table,
    "csv": format_csv,
    "json": format_json,
    "jsonl": format_jsonl,
    "vmaf-json": format_vmaf_json,
}


def write_text(stream: TextIO, text: str) -> None:
  """Writes to a stream whatever its encoding (stdout may be ASCII): what the encoding cannot hold
  goes out as backslash escapes rather than as a UnicodeEncodeError after all the scoring."""
  encoding = getattr(stream, "encoding", None) or "utf-8"
  stream.write(text.encode(encoding, "backslashreplace").decode(encoding))
  stream.flush()


class RowStream:
  """--format csv or jsonl written to a stream (stdout, a pipe, a device) row by row as results
  are made, so a consumer sees each score at once and a killed run has written all it scored."""

  def __init__(self, stream: TextIO, output_format: str, sampling: Sampling):
    if output_format not in STREAMED_FORMATS:
      raise ValueError(f"{output_format!r} cannot be streamed; streamed: {STREAMED_FORMATS}")
    self.stream, self.format, self.sampling = stream, output_format, sampling
    if output_format == "csv":
      write_text(stream, _csv_text([], sampling, header=True))

  def write(self, record: dict[str, Any]) -> None:
    write_text(
        self.stream,
        json_line(record)
        if self.format == "jsonl"
        else _csv_text([record], self.sampling, header=False),
    )

"""`--output FILE`: checked before anything is scored, every result kept as it is made, FILE replaced once.

FILE is checked first (not a directory, not one of the inputs, its directory exists and is
writable); every result is appended to FILE.partial as it is made, so a killed run keeps what it
scored and `--resume` scores only the rest (with the same model: each row names it by
`TrainedModel.identity`); FILE itself is written once, at the end, through a temporary file and an
atomic rename, so it is never half-written.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import stat
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jaxvqa.scoring.names import file_key, os_reason, printable_name
from jaxvqa.scoring.provenance import decoded_at
from jaxvqa.scoring.records import Provenance, json_line, score_from_record
from jaxvqa.scoring.results import VideoScore

PARTIAL_SUFFIX = ".partial"


class OutputError(Exception):
  """--output cannot be used as asked; the message names the file and what to do (exit 2)."""


def check_output(path: str | os.PathLike, inputs: Sequence[str]) -> bool:
  """Checks `--output path` before anything is scored; True for a regular (or new) file, False for
  a device or FIFO (e.g. /dev/stdout), which is written as a stream.

  Raises OutputError: a directory, a missing or non-directory parent, or one of `inputs` (or
  its FILE.partial is: compared by device and inode, so links and other spellings count).
  """
  shown = printable_name(os.fspath(path))
  try:
    info = os.stat(path)  # through symbolic links: /dev/stdout is the pipe or terminal behind it
  except (FileNotFoundError, NotADirectoryError):  # a new file; its directory is checked below
    info = None
  except OSError as error:
    raise OutputError(f"--output {shown}: {os_reason(error)}") from error
  if info is not None and stat.S_ISDIR(info.st_mode):
    raise OutputError(
        f"--output {shown} is a directory: name a file, e.g. "
        f"{os.path.join(shown, 'scores.csv')}"
    )
  target = os.path.realpath(path)
  regular = info is None or stat.S_ISREG(info.st_mode)
  parent = os.path.dirname(target)
  if regular and not os.path.isdir(parent):
    problem = (
        "is not a directory" if os.path.lexists(parent) else "does not exist (create it first)"
    )
    raise OutputError(f"--output {shown}: {printable_name(parent)} {problem}")
  outputs = {}
  for candidate in (path, target + PARTIAL_SUFFIX):
    try:
      found = os.stat(candidate)
    except OSError:
      continue
    outputs[(found.st_dev, found.st_ino)] = os.fspath(candidate)
  for given in inputs:
    try:
      found = os.stat(given)
    except OSError:
      continue
    clash = outputs.get((found.st_dev, found.st_ino))
    if clash is not None:
      raise OutputError(
          f"--output {shown}: {printable_name(clash)} is one of the files to score "
          f"({printable_name(given)}); writing there would destroy it: choose "
          "another output file"
      )
  return regular


def _current_umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def _read_rows(data: bytes, name: str) -> list[dict[str, Any]]:
  """The JSON-lines rows of an output file's complete lines; raises OutputError naming the line."""
  rows = []
  for number, line in enumerate(data.split(b"\n"), 1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except ValueError as error:
      row, detail = None, str(error)
    else:
      detail = "not an object with path and model_id"
    if not (isinstance(row, dict) and "path" in row and "model_id" in row):
      raise OutputError(
          f"{name}:{number}: not a row written by jaxvqa score ({detail}); move the "
          "file away to start over"
      )
    rows.append(row)
  return rows


class OutputStream:
  """`--output` that is not a regular file (a device such as /dev/full, a FIFO), written as a
  stream: a failed write or flush is an OutputError naming it, not a traceback."""

  def __init__(self, path: str | os.PathLike):
    self.shown = printable_name(os.fspath(path))
    try:
      self._file = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115 — until close
    except OSError as error:
      raise OutputError(f"--output {self.shown}: {os_reason(error)}") from error
    self.encoding = self._file.encoding

  def _failed(self, error: OSError) -> OutputError:
    return OutputError(f"cannot write --output {self.shown}: {os_reason(error)}")

  def write(self, text: str) -> None:
    try:
      self._file.write(text)
    except OSError as error:
      raise self._failed(error) from error

  def flush(self) -> None:
    try:
      self._file.flush()
    except OSError as error:
      raise self._failed(error) from error

  def close(self) -> None:
    """Flushes and closes; a second call does nothing."""
    if self._file.closed:
      return
    try:
      self._file.close()
    except OSError as error:
      raise self._failed(error) from error


class OutputFile:
  """`--output FILE` for a regular file: every result kept as it is made, FILE replaced once.

  FILE.partial, beside FILE, gets one JSON line per file (`score_record`) as soon as it is
  scored, flushed, so a kill loses at most the row being written; it is locked (flock) while a
  run appends to it, so two runs cannot mix their rows. At the end the chosen format is written to
  a temporary file in FILE's directory, synced, and renamed over FILE (os.replace: atomic on
  POSIX, so FILE holds its old content or the new, never a part), then FILE.partial is removed.
  A run that fails or is killed leaves FILE as it was and FILE.partial with what it scored, which
  `--resume` continues.
  """

  def __init__(self, path: str | os.PathLike, *, output_format: str, resume: bool):
    self.shown = printable_name(os.fspath(path))
    # Through a symbolic link: its target is replaced and the link kept.
    self.target = Path(os.path.realpath(path))
    self.partial = self.target.with_name(self.target.name + PARTIAL_SUFFIX)
    self.partial_shown = (
        printable_name(os.fspath(self.partial))
        if os.path.islink(path)
        else self.shown + PARTIAL_SUFFIX
    )
    self.format = output_format
    self.resume = resume
    self.replaces = self.target.exists()
    self.rows = 0  # rows in FILE.partial
    self.appended = 0  # of which this run wrote
    self.resumed_from = self.partial_shown
    self.finished = False
    self._file: io.BufferedRandom | None = None
    self._created = False
    self._seed: list[dict[str, Any]] = []  # rows of a finished FILE to copy into FILE.partial

  def open(self) -> list[dict[str, Any]]:
    """Creates (or, resuming, reopens) FILE.partial and locks it; returns the rows to resume from.

    Raises OutputError: FILE.partial exists without --resume (an interrupted run's results,
    never overwritten), or is being written by another run; or FILE cannot be written.
    """
    existed = os.path.lexists(self.partial)
    try:
      self._file = open(self.partial, "a+b")  # noqa: SIM115 — held until finish or close
    except OSError as error:
      raise OutputError(
          f"--output {self.shown}: cannot write {self.partial_shown}: {os_reason(error)}"
      ) from error
    self._created = not existed
    try:
      fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as error:
      raise OutputError(
          f"{self.partial_shown} is being written by another jaxvqa score run; "
          "wait for it to end, or choose another --output"
      ) from error
    if existed and not self.resume:
      raise OutputError(
          f"{self.partial_shown} holds the results of an interrupted run: add --resume to keep "
          "them and score only the other files, or delete it to start over"
      )
    if existed:
      self._file.seek(0)
      data = self._file.read()
      # A kill in the middle of a row leaves it without its newline: cut it, keep the rest.
      complete = data.rfind(b"\n") + 1
      if complete < len(data):
        print(
            f"jaxvqa score: {self.partial_shown}: dropped its last row, cut short when the run "
            "was stopped",
            file=sys.stderr,
        )
        self._file.truncate(complete)
      rows = _read_rows(data[:complete], self.partial_shown)
      self.rows = len(rows)
      return rows
    if self.resume and self.replaces:
      if self.format != "jsonl":
        raise OutputError(
            f"--resume: {self.shown} is a finished {self.format} output and no "
            f"{self.partial_shown} is left by an interrupted run; only JSON lines can be read "
            "back: drop --resume to score every file again, or write --format jsonl"
        )
      self._seed = _read_rows(self.target.read_bytes(), self.shown)
      self.resumed_from = self.shown
      return self._seed
    return []

  def resume_from(
      self, rows: Sequence[dict[str, Any]], provenance: Provenance, per_device_batch: int
  ) -> list[VideoScore]:
    """The scores in `rows` (failed files are left out, to be tried again), one per file.

    Raises OutputError: a row written by an earlier jaxvqa score (without `jaxvqa_version`), by
    another model (`model_id`), with other --frames / segments, or at another --display-size
    (rows written before the option existed have none: scored at each file's own size), or with
    another --batch-size: a model call's numerics depend on its batch (~1e-6), and a resumed
    output promises the bytes of an uninterrupted run (rows without `per_device_batch`, from a
    finished jsonl FILE or an earlier version, are not compared).
    """
    kept: dict[str, VideoScore] = {}
    sampling = provenance.sampling
    for row in rows:
      if "jaxvqa_version" not in row:
        raise OutputError(
            f"--resume: {self.resumed_from} was written by an earlier jaxvqa score, whose rows "
            "lack the fields this version writes (label_source, model_version, jaxvqa_version, "
            "frames, frame_indices, pooled); finish it with the jaxvqa that began it, or move it "
            "away and score again"
        )
      if row["model_id"] != provenance.model_id:
        raise OutputError(
            f"--resume: {self.resumed_from} holds scores by another model ({row['model_id']}, "
            f"checkpoint {row.get('checkpoint')}); this run's model is {provenance.model_id} "
            f"(checkpoint {provenance.checkpoint['path']}): resume with that run's --workdir, "
            "--which and --raw-weights, or write to another --output"
        )
      asked = (sampling.frames, sampling.segmented_by)
      if (row["frames"], row["segmented_by"]) != asked:
        raise OutputError(
            f"--resume: {self.resumed_from} was scored with --frames {row['frames']} and "
            f"segments {row['segmented_by'] or 'none'}; this run asks for --frames "
            f"{asked[0]} and segments {asked[1] or 'none'}: resume with the same --frames, "
            "--segments, --segment-seconds or --frame-scores (and --format: vmaf-json implies "
            "--frame-scores)"
        )
      scored_at = row.get("display_size")
      if scored_at != provenance.display_size_text:
        raise OutputError(
            f"--resume: {self.resumed_from} was scored decoding {decoded_at(scored_at)}; this "
            f"run decodes {decoded_at(provenance.display_size_text)}: resume with the same "
            "--display-size, or write to another --output"
        )
      batch = row.get("per_device_batch")
      if batch is not None and batch != per_device_batch:
        raise OutputError(
            f"--resume: {self.resumed_from} was scored {batch} clips per device per model call; "
            f"this run asks for {per_device_batch}: resume with --batch-size {batch} (scores "
            "differ by ~1e-6 between batch sizes), or write to another --output"
        )
      if row.get("error") is None:
        kept[file_key(row["path"])] = score_from_record(row)
    for row in self._seed:
      self.append(row)
    return list(kept.values())

  def append(self, record: dict[str, Any]) -> None:
    try:
      self._file.write(json_line(record).encode("ascii"))
      self._file.flush()
    except OSError as error:  # e.g. a full disk: the rows before this one are on disk
      raise OutputError(f"cannot write {self.partial_shown}: {os_reason(error)}") from error
    self.rows += 1
    self.appended += 1

  def finish(self, text: str) -> None:
    """Puts `text` in FILE atomically and removes FILE.partial.

    Raises OutputError (FILE unchanged, FILE.partial kept) when FILE cannot be written.
    """
    try:
      self._replace_target(text)
    except OSError as error:
      raise OutputError(
          f"cannot write {self.shown}: {os_reason(error)}; it is unchanged"
      ) from error
    os.unlink(self.partial)
    self.finished = True
    self.close()

  def _replace_target(self, text: str) -> None:
    mode = os.stat(self.target).st_mode & 0o7777 if self.replaces else 0o666 & ~_current_umask()
    descriptor, temporary = tempfile.mkstemp(
        dir=self.target.parent, prefix=f".{self.target.name}.", suffix=".tmp"
    )
    try:
      with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
      os.chmod(temporary, mode)
      os.replace(temporary, self.target)
    except BaseException:
      if os.path.exists(temporary):
        os.unlink(temporary)
      raise
    directory = os.open(self.target.parent, os.O_RDONLY)
    try:
      os.fsync(directory)  # the rename itself survives a power cut
    finally:
      os.close(directory)

  def close(self) -> None:
    """Releases FILE.partial; removes it when this run created it and wrote nothing."""
    if self._file is None:
      return
    self._file.close()
    self._file = None
    if self._created and self.rows == 0 and not self.finished and os.path.exists(self.partial):
      os.unlink(self.partial)

"""`jaxvqa score PATH... --workdir DIR`: a quality score for every video file, on the label's scale.

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

Exit status: 0 every file scored, 1 some input could not be scored, 2 bad invocation (no
checkpoint or a damaged one, nothing to score, an unusable --output), 130 interrupted.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import csv
import dataclasses
import errno
import fcntl
import glob
import io
import json
import math
import os
import re
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
from tqdm import tqdm

from jaxvqa.data import video
from jaxvqa.data.compress import VIDEO_EXTENSIONS

if TYPE_CHECKING:
  from jaxvqa.inference import TrainedModel

FORMATS = ("table", "csv", "json", "jsonl")
STREAMED_FORMATS = ("csv", "jsonl")  # written row by row to stdout as results are made
# The same as inference.DEFAULT_PER_DEVICE_BATCH (not imported: that pulls in JAX, and
# `jaxvqa --help` should not wait for it); tests/test_scoring.py checks they agree.
DEFAULT_PER_DEVICE_BATCH = 8
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
PARTIAL_SUFFIX = ".partial"
# What each data builder's labels are (jaxvqa.data.builders.BUILDERS; not imported: it needs
# TFDS, which inference machines lack). A calibrated score is on this scale.
LABEL_SCALES = {
    "compressed": "VMAF (0-100)",
    "konvid_1k": "MOS (1-5)",
    "live_vqc": "MOS (0-100)",
    "youtube_ugc": "MOS (1-5)",
    "lsvq": "MOS (0-100)",
}


@dataclasses.dataclass(frozen=True)
class SegmentScore:
  start_frame: int  # first frame of the segment
  end_frame: int    # one past its last frame
  start_seconds: float  # from the stream's timestamps, 0 = the first frame
  end_seconds: float    # when its last frame ends
  score: float      # calibrated (label scale)
  raw_score: float  # model output


@dataclasses.dataclass(frozen=True)
class VideoScore:
  path: str         # as given or found (not resolved), so it matches what the user typed
  score: float      # calibrated (label scale); the raw score when the checkpoint has no calibration
  raw_score: float  # model output
  num_frames: int
  fps: float
  segments: tuple[SegmentScore, ...] = ()


@dataclasses.dataclass(frozen=True)
class ScoreFailure:
  path: str
  reason: str


# ----------------------------------------------------------------------------- names


def escape_name(name: str) -> str:
  """A file name as text that any UTF-8 output holds, losslessly for every real name.

  Python reads a name that is not UTF-8 with its bad bytes as surrogates ('clip\\udcff.mp4' for the
  bytes b'clip\\xff.mp4'), which no encoder writes. Each such byte becomes the four characters
  \\xNN ('clip\\\\xff.mp4', shown by a shell as clip\\xff.mp4; `printf 'clip\\xff.mp4'` gives the
  name back); a UTF-8 name is unchanged.
  """
  try:
    return os.fsencode(name).decode("utf-8", "backslashreplace")
  except UnicodeEncodeError:  # a surrogate that no file system produced (e.g. from a JSON file)
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable_name(name: str) -> str:
  """`escape_name`, then control characters as escapes ('\\n', '\\x1b'): for lines read by people
  (stderr, the table), where a newline would forge a line and ESC would drive the terminal."""
  return _CONTROL_CHARACTERS.sub(
      lambda match: match.group().encode("unicode_escape").decode("ascii"), escape_name(name))


# OWASP's CSV-injection list: a cell starting with one of these is a formula to a spreadsheet.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(text: str) -> str:
  """A CSV text cell that a spreadsheet shows as text: a leading `'` before a formula start."""
  return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


# ----------------------------------------------------------------------------- finding files


def _is_video_name(name: str) -> bool:
  return Path(name).suffix.lower() in VIDEO_EXTENSIONS and not name.startswith(".")


def _os_reason(error: OSError) -> str:
  """An OSError in words, without the file name (the caller names it)."""
  if error.errno in (errno.EACCES, errno.EPERM):
    return "permission denied (its permissions keep this user out; fix them or run as its owner)"
  if error.errno == errno.ELOOP:
    return "symbolic link loop (too many levels of symbolic links)"
  text = error.strerror or type(error).__name__
  return text[:1].lower() + text[1:]


def _walk_videos(directory: str, failures: list[ScoreFailure]) -> list[str]:
  """Video files under `directory`, recursively, sorted; hidden files and directories skipped.

  Symbolic links to directories are followed, except one that leads back to a directory being
  walked (a loop). A directory that cannot be listed, and a loop, go to `failures`.
  """
  found: list[str] = []

  def visit(path: str, ancestors: frozenset[tuple[int, int]]) -> None:
    try:
      with os.scandir(path) as scan:
        entries = sorted((entry for entry in scan if not entry.name.startswith(".")),
                         key=lambda entry: entry.name)
    except OSError as error:
      failures.append(ScoreFailure(path, f"directory not searched: {_os_reason(error)}"))
      return
    subdirectories = []
    for entry in entries:
      try:
        is_directory = entry.is_dir()  # follows symbolic links
      except OSError:  # a link loop or a vanished target: a candidate file, reported when checked
        is_directory = False
      if is_directory:
        subdirectories.append(entry.path)
      elif _is_video_name(entry.name):
        found.append(entry.path)
    for subdirectory in subdirectories:
      try:
        info = os.stat(subdirectory)
      except OSError as error:
        failures.append(ScoreFailure(subdirectory, f"directory not searched: {_os_reason(error)}"))
        continue
      key = (info.st_dev, info.st_ino)
      if key in ancestors:
        failures.append(ScoreFailure(
            subdirectory, "directory not searched: symbolic link loop (it leads back to a "
            f"directory above it, {printable_name(os.path.realpath(subdirectory))})"))
        continue
      visit(subdirectory, ancestors | {key})

  try:
    top = os.stat(directory)
  except OSError as error:
    failures.append(ScoreFailure(directory, f"directory not searched: {_os_reason(error)}"))
    return found
  visit(directory, frozenset({(top.st_dev, top.st_ino)}))
  return found


def find_videos(inputs: Sequence[str]) -> tuple[list[str], list[ScoreFailure]]:
  """The files to score for the command's PATH arguments, in order, each once.

  A path that exists is taken literally (so names with '*' or '[' work): a file is scored
  whatever its extension (it was asked for by name); a directory is walked for files with a
  video extension. A path that does not exist but holds glob characters is expanded
  (`**` recursive); its matches are treated the same way. Anything else is a failure, and so is
  a directory that cannot be searched (named, with the reason). Python's glob skips directories it
  cannot read without a word: a directory given itself is searched with every error reported.
  """
  files, failures, seen = [], [], set()

  def add(path: str) -> None:
    key = os.path.realpath(path)
    if key not in seen:
      seen.add(key)
      files.append(path)

  def add_existing(path: str) -> None:
    if os.path.isdir(path):
      for found in _walk_videos(path, failures):
        add(found)
    else:
      add(path)

  for given in inputs:
    if os.path.lexists(given):
      add_existing(given)
    elif glob.has_magic(given):
      matches = sorted(glob.glob(given, recursive=True))
      if not matches:
        failures.append(ScoreFailure(given, "no file matches this pattern"))
      for match in matches:
        add_existing(match)
    else:
      failures.append(ScoreFailure(given, "file not found"))
  return files, failures


def file_problem(path: str) -> str | None:
  """Why `path` cannot be read as a video file, found without reading it; None when it can.

  Only a regular file is opened: reading a FIFO waits for a writer (forever, in a batch job) and
  reading a device is never a video. Unreadable files are named as such here, not left to decord,
  which reports every open failure as "not a video".
  """
  try:
    info = os.stat(path)
  except OSError as error:
    if error.errno == errno.ENOENT and os.path.islink(path):
      return f"broken symbolic link (its target {printable_name(os.readlink(path))} does not exist)"
    return "file not found" if error.errno == errno.ENOENT else _os_reason(error)
  kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
           (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
           (stat.S_ISSOCK, "a socket"))
  for test, kind in kinds:
    if test(info.st_mode):
      return f"{kind}, not a video file (not opened)"
  try:
    os.close(os.open(path, os.O_RDONLY))
  except OSError as error:
    return _os_reason(error)
  return None


# ----------------------------------------------------------------------------- decoding


@dataclasses.dataclass(frozen=True)
class DecodedVideo:
  clips: np.ndarray                     # uint8 [1 + N, T, S, S, 3]: whole video, then N segments
  num_frames: int
  fps: float
  segments: tuple[tuple[int, int], ...]  # N (start, stop) frame ranges
  segment_seconds: tuple[tuple[float, float], ...] = ()  # N (start, end) times, stream timestamps


def segment_bounds(num_frames: int, num_segments: int) -> list[tuple[int, int]]:
  """N contiguous frame ranges [⌊s·F/N⌋, ⌊(s+1)·F/N⌋); a video shorter than N keeps one frame each."""
  bounds = [(s * num_frames) // num_segments for s in range(num_segments + 1)]
  return [(start, max(stop, start + 1)) for start, stop in zip(bounds[:-1], bounds[1:])]


def decode_video(path: video.VideoSource, options: video.FrameOptions, *, num_segments: int = 0,
                 decode_threads: int = 1) -> DecodedVideo:
  """The whole-video clip and `num_segments` segment clips of one file.

  The whole-video clip equals `video.load_clip(path, train=False, ...)`: the same frames,
  prepared the same way (both preparations work frame by frame). Each distinct frame is
  decoded and prepared once, even when the whole clip and a segment share it.

  Raises video.VideoDecodeError naming the file and the reason.
  """
  reader = video.open_reader(path, num_threads=decode_threads)
  num_frames = len(reader)
  fps = float(reader.get_avg_fps())
  clip_length = options.num_frames
  segments = segment_bounds(num_frames, num_segments) if num_segments else []
  index_sets = [video.sample_frame_indices(num_frames, clip_length, train=False, rng=None)]
  index_sets += [start + video.sample_frame_indices(stop - start, clip_length, train=False, rng=None)
                 for start, stop in segments]
  unique, inverse = np.unique(np.concatenate(index_sets), return_inverse=True)
  # One seek-ordered pass over the open reader for every clip: decord decodes from the key frame
  # before each index, so a `load_clip` per clip would reopen the file and decode shared stretches
  # again.
  frames = video.read_from_reader(reader, unique, video.describe_source(path))
  prepared = np.ascontiguousarray(video.prepare_frames(
      frames, options.size, mode=options.mode, fragment_grid=options.fragment_grid))
  clips = prepared[inverse.reshape(len(index_sets), clip_length)]
  seconds = ()
  if segments:
    starts = video.frame_start_seconds(reader)
    seconds = tuple((float(starts[start]), float(starts[stop])) for start, stop in segments)
  return DecodedVideo(clips=clips, num_frames=num_frames, fps=fps, segments=tuple(segments),
                      segment_seconds=seconds)


def _failure_reason(path: str, error: Exception) -> str:
  """The reason without the file name that VideoDecodeError messages start with."""
  message = str(error)
  prefix = f"{path}: "
  if isinstance(error, video.VideoDecodeError):
    return message[len(prefix):] if message.startswith(prefix) else message
  return f"{type(error).__name__}: {message}"


@contextlib.contextmanager
def _decodable_name(path: str) -> Iterator[str]:
  """`path`, or, for a name that is not UTF-8, a /dev/fd name of the file opened here.

  decord passes file names to FFmpeg as UTF-8 and raises UnicodeEncodeError on any other; the
  file opened by its bytes name and reached through /dev/fd is read from disk all the same.
  """
  try:
    path.encode("utf-8")
  except UnicodeEncodeError:
    descriptor = os.open(path, os.O_RDONLY)
    try:
      yield f"/dev/fd/{descriptor}"
    finally:
      os.close(descriptor)
  else:
    yield path


def _decode_or_failure(path: str, options: video.FrameOptions, num_segments: int
                       ) -> DecodedVideo | ScoreFailure:
  problem = file_problem(path)
  if problem is not None:
    return ScoreFailure(path, problem)
  try:
    with _decodable_name(path) as name:
      try:
        return decode_video(name, options, num_segments=num_segments, decode_threads=1)
      except Exception as error:  # noqa: BLE001 — any bad file is reported, never fatal to the run
        return ScoreFailure(path, _failure_reason(name, error))
  except OSError as error:
    return ScoreFailure(path, _os_reason(error))


# ----------------------------------------------------------------------------- scoring


def score_videos(
    paths: Sequence[str], trained: TrainedModel, *, num_segments: int = 0,
    per_device_batch: int = DEFAULT_PER_DEVICE_BATCH, workers: int = 4,
    on_failure: Callable[[ScoreFailure], None] | None = None,
    on_result: Callable[[VideoScore], None] | None = None, progress: bool = False,
) -> tuple[list[VideoScore], list[ScoreFailure]]:
  """Scores every file of `paths`; returns (scores, failures), each in the order of `paths`.

  Args:
    paths: video files.
    trained: the loaded run (`inference.load_trained_model`).
    num_segments: N > 0 adds a score per temporal segment.
    per_device_batch: clips per device per model call; the last batch is padded, so every call
      has the same shape (one compilation, and scores independent of the device count).
    workers: decode threads.
    on_failure: called at once for each file that cannot be decoded (e.g. to print it).
    on_result: called with each score as soon as it is made (e.g. to write it out), so a run
      that dies later keeps what it scored.
    progress: a tqdm bar on stderr.
  """
  if num_segments < 0:
    raise ValueError(f"num_segments must be >= 0, got {num_segments}")
  if workers < 1:
    raise ValueError(f"workers must be >= 1, got {workers}")
  batch_size = trained.global_batch_size(per_device_batch)
  clips_per_video = 1 + num_segments
  # Decoded clips waiting for the model are bounded to about two batches, plus one video per worker.
  lookahead = max(2, -(-2 * batch_size // clips_per_video)) + workers
  decoded: dict[int, DecodedVideo] = {}
  clip_scores: dict[int, np.ndarray] = {}
  clips_left: dict[int, int] = {}
  results: dict[int, VideoScore] = {}
  failures: dict[int, ScoreFailure] = {}
  waiting_clips: list[np.ndarray] = []
  waiting_owners: list[tuple[int, int]] = []  # (video position, clip number) of each waiting clip
  in_flight: list[tuple[Any, list[tuple[int, int]]]] = []
  bar = tqdm(total=len(paths), desc="score", unit="video", disable=not progress,
             file=sys.stderr, dynamic_ncols=True)

  def fail(position: int, failure: ScoreFailure) -> None:
    failures[position] = failure
    if on_failure is not None:
      on_failure(failure)
    bar.update(1)

  def collect_oldest() -> None:
    device_scores, owners = in_flight.pop(0)
    raw = np.asarray(device_scores, np.float64)[:len(owners)]
    for (position, clip_number), value in zip(owners, raw):
      clip_scores[position][clip_number] = value
      clips_left[position] -= 1
      if clips_left[position] == 0:
        results[position] = _video_score(paths[position], decoded.pop(position),
                                         clip_scores.pop(position), trained)
        if on_result is not None:
          on_result(results[position])
        bar.update(1)

  def launch(count: int) -> None:
    clips = np.stack(waiting_clips[:count])
    owners = waiting_owners[:count]
    del waiting_clips[:count], waiting_owners[:count]
    in_flight.append((trained.dispatch(clips, per_device_batch), owners))
    # The next batch is queued on the devices before this blocks on the previous one.
    if len(in_flight) > 1:
      collect_oldest()

  with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="jaxvqa-decode") as pool:
    pending: collections.deque = collections.deque()
    next_position = 0
    try:
      while next_position < len(paths) or pending:
        while next_position < len(paths) and len(pending) < lookahead:
          pending.append((next_position, pool.submit(
              _decode_or_failure, paths[next_position], trained.frames, num_segments)))
          next_position += 1
        position, future = pending.popleft()
        outcome = future.result()
        if isinstance(outcome, ScoreFailure):
          fail(position, outcome)
          continue
        decoded[position] = dataclasses.replace(outcome, clips=np.empty(0, np.uint8))
        clip_scores[position] = np.zeros(clips_per_video, np.float64)
        clips_left[position] = clips_per_video
        waiting_clips.extend(outcome.clips)
        waiting_owners.extend((position, number) for number in range(clips_per_video))
        while len(waiting_clips) >= batch_size:
          launch(batch_size)
      if waiting_clips:
        launch(len(waiting_clips))
      while in_flight:
        collect_oldest()
    finally:
      for _, future in pending:
        future.cancel()
      bar.close()
  return ([results[p] for p in sorted(results)], [failures[p] for p in sorted(failures)])


def _video_score(path: str, decoded: DecodedVideo, raw: np.ndarray, trained: TrainedModel
                 ) -> VideoScore:
  """raw: float64 [1 + N] clip scores (whole video first)."""
  calibrated = trained.calibrate(raw)
  segments = tuple(
      SegmentScore(start_frame=start, end_frame=stop, start_seconds=start_seconds,
                   end_seconds=end_seconds, score=float(calibrated[1 + s]),
                   raw_score=float(raw[1 + s]))
      for s, ((start, stop), (start_seconds, end_seconds))
      in enumerate(zip(decoded.segments, decoded.segment_seconds)))
  return VideoScore(path=path, score=float(calibrated[0]), raw_score=float(raw[0]),
                    num_frames=decoded.num_frames, fps=decoded.fps, segments=segments)


# ----------------------------------------------------------------------------- provenance


def scale_description(trained: TrainedModel) -> str:
  """What a score means: the label scale and its calibration, or that it is raw model output."""
  builder = trained.config.data.get("builder", "")
  label = LABEL_SCALES.get(builder, f"the labels of data set {builder!r}")
  if trained.calibration is None:
    return (f"raw model output, uncalibrated (not {label}): the {trained.checkpoint.which} "
            "checkpoint carries no calibration; use --which best for scores on the label scale")
  return (f"{label}, calibrated on the validation split: label scale "
          f"(calibration: {trained.calibration.describe()})")


@dataclasses.dataclass(frozen=True)
class Provenance:
  """What produced a set of scores; every output format carries it."""

  model: str                  # architecture and input in one line (TrainedModel.describe)
  model_id: str               # TrainedModel.identity: equal exactly when the scores would be
  model_config: dict[str, Any]
  checkpoint: dict[str, Any]  # inference.CheckpointInfo.to_dict()
  calibration: dict[str, Any] | None
  scale: str                  # scale_description

  @classmethod
  def of(cls, trained: TrainedModel) -> Provenance:
    return cls(model=trained.describe(), model_id=trained.identity,
               model_config=trained.config.model.to_dict(),
               checkpoint=trained.checkpoint.to_dict(),
               calibration=(trained.calibration.to_dict()
                            if trained.calibration is not None else None),
               scale=scale_description(trained))

  def row_fields(self) -> dict[str, Any]:
    """Repeated on every CSV and JSON-lines row, so a row cut out of its file still says what
    produced it and `--resume` can tell one model's rows from another's."""
    return {"scale": self.scale, "model_id": self.model_id, "checkpoint": self.checkpoint["path"],
            "step": self.checkpoint["step"], "model": self.model}


# ----------------------------------------------------------------------------- rows


def _number(value: float) -> Any:
  """JSON has no NaN: write null."""
  return None if isinstance(value, float) and not math.isfinite(value) else value


def _video_fields(score: VideoScore) -> dict[str, Any]:
  """A score as JSON: the name escaped, NaN as null."""
  return {"path": escape_name(score.path), "score": _number(score.score),
          "raw_score": _number(score.raw_score), "num_frames": score.num_frames,
          "fps": _number(score.fps),
          "segments": [{key: _number(value) for key, value in dataclasses.asdict(segment).items()}
                       for segment in score.segments]}


def score_record(score: VideoScore, provenance: Provenance) -> dict[str, Any]:
  """One scored file as a JSON-lines row (the rows of FILE.partial and of --format jsonl)."""
  return {**_video_fields(score), "error": None, **provenance.row_fields()}


def failure_record(failure: ScoreFailure, provenance: Provenance) -> dict[str, Any]:
  return {"path": escape_name(failure.path), "score": None, "raw_score": None, "num_frames": None,
          "fps": None, "segments": [], "error": failure.reason, **provenance.row_fields()}


def _records(scores: Sequence[VideoScore], failures: Sequence[ScoreFailure],
             provenance: Provenance) -> list[dict[str, Any]]:
  return ([score_record(score, provenance) for score in scores]
          + [failure_record(failure, provenance) for failure in failures])


def score_from_record(record: dict[str, Any]) -> VideoScore:
  """The inverse of `score_record` (the path stays escaped; `escape_name` leaves it as it is)."""

  def number(value: Any) -> float:
    return math.nan if value is None else float(value)

  return VideoScore(
      path=str(record["path"]), score=number(record["score"]),
      raw_score=number(record["raw_score"]), num_frames=int(record["num_frames"]),
      fps=number(record["fps"]),
      segments=tuple(SegmentScore(
          start_frame=int(segment["start_frame"]), end_frame=int(segment["end_frame"]),
          start_seconds=number(segment["start_seconds"]),
          end_seconds=number(segment["end_seconds"]), score=number(segment["score"]),
          raw_score=number(segment["raw_score"])) for segment in record["segments"]))


def json_line(record: dict[str, Any]) -> str:
  # ASCII only (ensure_ascii): escaped names and all, a row survives any encoding on the way.
  return json.dumps(record, allow_nan=False) + "\n"


def _csv_columns(num_segments: int) -> list[str]:
  return ["path", "score", "raw_score", "num_frames", "fps",
          *(f"segment_{s + 1}" for s in range(num_segments)),
          "error", "scale", "model_id", "checkpoint", "step", "model"]


def _csv_cells(record: dict[str, Any], num_segments: int) -> dict[str, str]:
  """A row's CSV cells: numbers at full precision, text cells safe from spreadsheet formulas."""

  def number(value: Any) -> str:
    return "" if value is None else repr(value)

  cells = {key: number(record[key]) for key in ("score", "raw_score", "num_frames", "fps", "step")}
  cells.update({key: spreadsheet_text(str(record[key] or ""))
                for key in ("path", "error", "scale", "model_id", "checkpoint", "model")})
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


def format_json(scores: Sequence[VideoScore], failures: Sequence[ScoreFailure],
                provenance: Provenance, num_segments: int) -> str:
  document = {
      "model": provenance.model,
      "model_id": provenance.model_id,
      "model_config": provenance.model_config,
      "checkpoint": provenance.checkpoint,
      "calibration": provenance.calibration,
      "scale": provenance.scale,
      "segments": num_segments,
      "videos": [{key: value for key, value in _video_fields(s).items()
                  if num_segments or key != "segments"} for s in scores],
      "failures": [{"path": escape_name(failure.path), "reason": failure.reason}
                   for failure in failures],
  }
  return json.dumps(document, indent=2, allow_nan=False) + "\n"


def format_jsonl(scores: Sequence[VideoScore], failures: Sequence[ScoreFailure],
                 provenance: Provenance, num_segments: int) -> str:
  """One JSON object per file (`score_record`, `failure_record`), each naming its model."""
  del num_segments  # every row carries its own segments
  return "".join(json_line(record) for record in _records(scores, failures, provenance))


def format_csv(scores: Sequence[VideoScore], failures: Sequence[ScoreFailure],
               provenance: Provenance, num_segments: int) -> str:
  """One row per file (failed files too, with `error` set); the scale, model and checkpoint on
  every row, so a CSV still says what produced it after being concatenated or cut."""
  return _csv_text(_records(scores, failures, provenance), num_segments, header=True)


def format_table(scores: Sequence[VideoScore], failures: Sequence[ScoreFailure],
                 provenance: Provenance, num_segments: int) -> str:
  checkpoint = provenance.checkpoint
  header = [f"model:       {provenance.model} [{provenance.model_id}]",
            f"checkpoint:  {checkpoint['path']} (step {checkpoint['step']}, {checkpoint['which']}, "
            f"{checkpoint['weights']} weights)",
            f"scores:      {provenance.scale}", ""]
  titles = ["score", *(f"seg {s + 1}" for s in range(num_segments)), "file"]
  rows = [[f"{s.score:.3f}", *(f"{segment.score:.3f}" for segment in s.segments),
           printable_name(s.path)] for s in scores]
  rows += [["-", *("-" for _ in range(num_segments)),
            f"{printable_name(failure.path)}  (failed: {printable_name(failure.reason)})"]
           for failure in failures]
  widths = [max(len(row[i]) for row in [titles, *rows]) for i in range(len(titles) - 1)]

  def line(cells: list[str]) -> str:
    return "  ".join([*(cell.rjust(width) for cell, width in zip(cells, widths)), cells[-1]])

  rule = "  ".join(["-" * width for width in widths] + ["-" * 4])
  return "\n".join(header + [line(titles), rule] + [line(row) for row in rows]) + "\n"


FORMATTERS = {"table": format_table, "csv": format_csv, "json": format_json,
              "jsonl": format_jsonl}


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
    write_text(self.stream, json_line(record) if self.format == "jsonl"
               else _csv_text([record], self.num_segments, header=False))


# ----------------------------------------------------------------------------- --output FILE


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
    raise OutputError(f"--output {shown}: {_os_reason(error)}") from error
  if info is not None and stat.S_ISDIR(info.st_mode):
    raise OutputError(f"--output {shown} is a directory: name a file, e.g. "
                      f"{os.path.join(shown, 'scores.csv')}")
  target = os.path.realpath(path)
  regular = info is None or stat.S_ISREG(info.st_mode)
  parent = os.path.dirname(target)
  if regular and not os.path.isdir(parent):
    problem = ("is not a directory" if os.path.lexists(parent)
               else "does not exist (create it first)")
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
      raise OutputError(f"--output {shown}: {printable_name(clash)} is one of the files to score "
                        f"({printable_name(given)}); writing there would destroy it: choose "
                        "another output file")
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
      raise OutputError(f"{name}:{number}: not a row written by jaxvqa score ({detail}); move the "
                        "file away to start over")
    rows.append(row)
  return rows


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
    self.partial_shown = (printable_name(os.fspath(self.partial)) if os.path.islink(path)
                          else self.shown + PARTIAL_SUFFIX)
    self.format = output_format
    self.resume = resume
    self.replaces = self.target.exists()
    self.rows = 0           # rows in FILE.partial
    self.appended = 0       # of which this run wrote
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
      raise OutputError(f"--output {self.shown}: cannot write {self.partial_shown}: "
                        f"{_os_reason(error)}") from error
    self._created = not existed
    try:
      fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as error:
      raise OutputError(f"{self.partial_shown} is being written by another jaxvqa score run; "
                        "wait for it to end, or choose another --output") from error
    if existed and not self.resume:
      raise OutputError(
          f"{self.partial_shown} holds the results of an interrupted run: add --resume to keep "
          "them and score only the other files, or delete it to start over")
    if existed:
      self._file.seek(0)
      data = self._file.read()
      # A kill in the middle of a row leaves it without its newline: cut it, keep the rest.
      complete = data.rfind(b"\n") + 1
      if complete < len(data):
        print(f"jaxvqa score: {self.partial_shown}: dropped its last row, cut short when the run "
              "was stopped", file=sys.stderr)
        self._file.truncate(complete)
      rows = _read_rows(data[:complete], self.partial_shown)
      self.rows = len(rows)
      return rows
    if self.resume and self.replaces:
      if self.format != "jsonl":
        raise OutputError(
            f"--resume: {self.shown} is a finished {self.format} output and no "
            f"{self.partial_shown} is left by an interrupted run; only JSON lines can be read "
            "back: drop --resume to score every file again, or write --format jsonl")
      self._seed = _read_rows(self.target.read_bytes(), self.shown)
      self.resumed_from = self.shown
      return self._seed
    return []

  def resume_from(self, rows: Sequence[dict[str, Any]], provenance: Provenance,
                  num_segments: int) -> list[VideoScore]:
    """The scores in `rows` (failed files are left out, to be tried again).

    Raises OutputError: a row scored by another model (`model_id`), or with another --segments.
    """
    kept: dict[str, VideoScore] = {}
    for row in rows:
      if row["model_id"] != provenance.model_id:
        raise OutputError(
            f"--resume: {self.resumed_from} holds scores by another model ({row['model_id']}, "
            f"checkpoint {row.get('checkpoint')}); this run's model is {provenance.model_id} "
            f"(checkpoint {provenance.checkpoint['path']}): resume with that run's --workdir, "
            "--which and --raw-weights, or write to another --output")
      if row.get("error") is not None:
        continue
      if len(row["segments"]) != num_segments:
        raise OutputError(
            f"--resume: {self.resumed_from} was scored with --segments {len(row['segments'])}; "
            f"resume with the same --segments (this run asks for {num_segments})")
      kept[row["path"]] = score_from_record(row)
    for row in self._seed:
      self.append(row)
    return list(kept.values())

  def append(self, record: dict[str, Any]) -> None:
    try:
      self._file.write(json_line(record).encode("ascii"))
      self._file.flush()
    except OSError as error:  # e.g. a full disk: the rows before this one are on disk
      raise OutputError(f"cannot write {self.partial_shown}: {_os_reason(error)}") from error
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
          f"cannot write {self.shown}: {_os_reason(error)}; it is unchanged") from error
    os.unlink(self.partial)
    self.finished = True
    self.close()

  def _replace_target(self, text: str) -> None:
    mode = (os.stat(self.target).st_mode & 0o7777 if self.replaces
            else 0o666 & ~_current_umask())
    descriptor, temporary = tempfile.mkstemp(dir=self.target.parent, prefix=f".{self.target.name}.",
                                             suffix=".tmp")
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


# ----------------------------------------------------------------------------- command


def add_subcommand(subparsers) -> None:
  """Registers `jaxvqa score`."""
  parser = subparsers.add_parser(
      "score", help="score video files with a trained model",
      description=("Scores video files with the model of a training run, on the label's scale "
                   "(VMAF 0-100 for compressed sets). Exit status: 0 all scored, 1 some input "
                   "could not be scored (reported on stderr), 2 bad invocation, 130 interrupted."),
      epilog="Names starting with '-' go after '--': jaxvqa score --workdir W -- -clip.mp4")
  parser.add_argument("paths", nargs="+", metavar="PATH",
                      help="video files, directories (searched recursively) or glob patterns")
  parser.add_argument("--workdir", required=True, type=Path,
                      help="the run directory `python train.py` wrote")
  parser.add_argument("--which", choices=("best", "latest"), default="best",
                      help="best (validation SRCC; carries the calibration) or latest checkpoint")
  parser.add_argument("--raw-weights", action="store_true",
                      help="use the raw weights instead of their EMA")
  parser.add_argument("--segments", type=int, default=0, metavar="N",
                      help="also score N equal temporal segments of each video")
  parser.add_argument("--format", choices=FORMATS, default="table",
                      help="output format; csv and jsonl stream to stdout row by row")
  parser.add_argument("--output", type=Path, default=None, metavar="FILE",
                      help="write the scores to FILE instead of stdout (results go to "
                           "FILE.partial as they are made; FILE is replaced at the end)")
  parser.add_argument("--resume", action="store_true",
                      help="continue an interrupted run: keep the scores in FILE.partial (made by "
                           "the same model) and score only the other files")
  parser.add_argument("--batch-size", type=int, default=None, metavar="PER_DEVICE",
                      help="clips per device per model call (default "
                           f"{DEFAULT_PER_DEVICE_BATCH}); scores do not depend on the device "
                           "count as long as this stays the same")
  parser.add_argument("--workers", type=int, default=None,
                      help="decode threads (default: CPU count)")
  parser.add_argument("--devices", type=int, default=None,
                      help="use the first N devices (default: all)")
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")
  parser.set_defaults(run=run)


def _error(message: str) -> None:
  print(f"jaxvqa score: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
  """`jaxvqa score`: see the module docstring for the exit status."""
  if args.segments < 0:
    _error(f"--segments must be >= 0, got {args.segments}")
    return EXIT_USAGE
  for flag in ("batch_size", "workers", "devices"):
    value = getattr(args, flag)
    if value is not None and value < 1:
      _error(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
      return EXIT_USAGE
  if args.resume and args.output is None:
    _error("--resume needs --output FILE: the file the interrupted run was writing")
    return EXIT_USAGE
  paths, failures = find_videos(args.paths)
  for failure in failures:
    _error(f"{printable_name(failure.path)}: {failure.reason}")
  if not paths:
    _error("no video files to score (directories are searched for "
           f"{', '.join(sorted(VIDEO_EXTENSIONS))})")
    return EXIT_USAGE
  output, stream, rows = None, sys.stdout, []
  try:
    if args.output is not None:
      if check_output(args.output, paths):
        output = OutputFile(args.output, output_format=args.format, resume=args.resume)
        rows = output.open()
      elif args.resume:
        raise OutputError(f"--resume: --output {printable_name(str(args.output))} is not a "
                          "regular file; there is nothing to resume from")
      else:
        try:
          stream = open(args.output, "w", encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as error:
          raise OutputError(f"--output {printable_name(str(args.output))}: "
                            f"{_os_reason(error)}") from error
    return _load_and_score(args, paths, failures, output, rows, stream)
  except OutputError as error:
    _error(str(error))
    return EXIT_USAGE
  except KeyboardInterrupt:
    _error("interrupted")
    return EXIT_INTERRUPTED
  finally:
    if output is not None:
      if not output.finished and output.appended:
        _error(f"{output.rows} results are kept in {output.partial_shown}: run the same command "
               "with --resume to score only the other files")
      output.close()
    if stream is not sys.stdout:
      stream.close()


def _load_and_score(args: argparse.Namespace, paths: list[str], failures: list[ScoreFailure],
                    output: OutputFile | None, rows: list[dict[str, Any]], stream: TextIO) -> int:
  """Loads the model, then scores `paths` into `output` (or `stream`); see `run`."""
  from jaxvqa import checkpointing, inference

  try:
    trained = inference.load_trained_model(
        args.workdir, which=args.which, ema=not args.raw_weights, num_devices=args.devices)
  except (checkpointing.CheckpointError, FileNotFoundError, ValueError) as error:
    _error(str(error))
    return EXIT_USAGE
  provenance = Provenance.of(trained)
  kept = output.resume_from(rows, provenance, args.segments) if output is not None else []
  done = {score.path for score in kept}
  todo = [path for path in paths if escape_name(path) not in done]
  if args.resume:
    print(f"jaxvqa score: resuming {output.resumed_from}: {len(paths) - len(todo)} of "
          f"{len(paths)} files already scored by this model", file=sys.stderr)
  if output is not None and output.replaces:
    print(f"jaxvqa score: {output.shown} exists and is replaced when scoring ends (until then "
          f"results go to {output.partial_shown})", file=sys.stderr)
  print(f"jaxvqa score: {len(todo)} files to score; model {trained.describe()} "
        f"[{trained.identity}]; checkpoint {trained.checkpoint.describe()}; "
        f"{trained.num_devices} device(s)", file=sys.stderr)
  row_stream = (RowStream(stream, args.format, args.segments)
                if output is None and args.format in STREAMED_FORMATS else None)

  def emit(record: dict[str, Any]) -> None:
    if output is not None:
      output.append(record)
    if row_stream is not None:
      row_stream.write(record)

  def report(failure: ScoreFailure) -> None:
    tqdm.write(f"jaxvqa score: {printable_name(failure.path)}: {failure.reason}", file=sys.stderr)
    emit(failure_record(failure, provenance))

  for failure in failures:
    emit(failure_record(failure, provenance))
  scores, decode_failures = score_videos(
      todo, trained, num_segments=args.segments,
      per_device_batch=args.batch_size or DEFAULT_PER_DEVICE_BATCH,
      workers=args.workers or os.cpu_count() or 1, on_failure=report,
      on_result=lambda score: emit(score_record(score, provenance)),
      progress=not args.no_progress)
  # In the order of the inputs, as an uninterrupted run writes them (kept rows of files no longer
  # among the inputs first).
  position = {escape_name(path): number for number, path in enumerate(paths)}
  scores = sorted(kept + scores, key=lambda score: position.get(escape_name(score.path), -1))
  failures = failures + decode_failures
  text = FORMATTERS[args.format](scores, failures, provenance, args.segments)
  if output is not None:
    output.finish(text)
    print(f"jaxvqa score: wrote {len(scores)} scores to {output.shown}"
          + (" (replaced the previous file)" if output.replaces else ""), file=sys.stderr)
  elif row_stream is None:
    write_text(stream, text)
  if failures:
    _error(f"{len(failures)} of {len(scores) + len(failures)} inputs could not be scored: "
           f"{', '.join(printable_name(failure.path) for failure in failures)}")
    return EXIT_SOME_FAILED
  return EXIT_OK

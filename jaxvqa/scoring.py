"""`jaxvqa score PATH... --workdir DIR`: a quality score for every video file, on the label's scale.

    PATH... ──find_videos──▶ files (directories walked for video extensions, globs expanded)
      ──decode pool (threads)──▶ clips uint8 [1 + N, T, S, S, 3] per file
                                 (the whole video, then N temporal segments when --segments N)
      ──fixed-size batches──▶ TrainedModel.dispatch (jitted, sharded over all devices)
      ──calibration──▶ one score per file (+ one per segment)

Decoding overlaps the model: decode workers run ahead of the batch being scored (decord and PIL
release the GIL), and batch k+1 is dispatched before the scores of batch k are fetched.

A clip is sampled exactly as evaluation samples it (`video.sample_frame_indices` with
train=False: each segment's centre frame; then resize + centre crop, or fragments at cell
centres), so a file scores what `eval.py` reports for the same file. Segment s of N covers the
frames [⌊s·F/N⌋, ⌊(s+1)·F/N⌋) of an F-frame video and is sampled the same way inside that range.

Files that cannot be decoded (missing, zero bytes, truncated, not a video, unknown codec) are
reported on stderr with their name and the reason; the others are still scored.
Exit status: 0 every file scored, 1 some file could not be scored, 2 bad invocation (no
checkpoint, nothing to score).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import csv
import dataclasses
import glob
import io
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from jaxvqa.data import video
from jaxvqa.data.compress import VIDEO_EXTENSIONS

if TYPE_CHECKING:
  from jaxvqa.inference import TrainedModel

FORMATS = ("table", "csv", "json")
# The same as inference.DEFAULT_PER_DEVICE_BATCH (not imported: that pulls in JAX, and
# `jaxvqa --help` should not wait for it); tests/test_scoring.py checks they agree.
DEFAULT_PER_DEVICE_BATCH = 8
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class SegmentScore:
  start_frame: int  # first frame of the segment
  end_frame: int    # one past its last frame
  start_seconds: float
  end_seconds: float
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


# ----------------------------------------------------------------------------- finding files


def _is_video_name(name: str) -> bool:
  return Path(name).suffix.lower() in VIDEO_EXTENSIONS and not name.startswith(".")


def _walk_videos(directory: str) -> list[str]:
  """Video files under `directory`, recursively, sorted; hidden files and directories skipped."""
  found = []
  for root, subdirectories, files in os.walk(directory):
    subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
    found.extend(os.path.join(root, name) for name in sorted(files) if _is_video_name(name))
  return found


def find_videos(inputs: Sequence[str]) -> tuple[list[str], list[ScoreFailure]]:
  """The files to score for the command's PATH arguments, in order, each once.

  A path that exists is taken literally (so names with '*' or '[' work): a file is scored
  whatever its extension (it was asked for by name); a directory is walked for files with a
  video extension. A path that does not exist but holds glob characters is expanded
  (`**` recursive); its matches are treated the same way. Anything else is a failure.
  """
  files, failures, seen = [], [], set()

  def add(path: str) -> None:
    key = os.path.realpath(path)
    if key not in seen:
      seen.add(key)
      files.append(path)

  def add_existing(path: str) -> None:
    if os.path.isdir(path):
      for found in _walk_videos(path):
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


# ----------------------------------------------------------------------------- decoding


@dataclasses.dataclass(frozen=True)
class DecodedVideo:
  clips: np.ndarray                     # uint8 [1 + N, T, S, S, 3]: whole video, then N segments
  num_frames: int
  fps: float
  segments: tuple[tuple[int, int], ...]  # N (start, stop) frame ranges


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
  return DecodedVideo(clips=clips, num_frames=num_frames, fps=fps, segments=tuple(segments))


def _failure_reason(path: str, error: Exception) -> str:
  """The reason without the file name that VideoDecodeError messages start with."""
  message = str(error)
  prefix = f"{path}: "
  if isinstance(error, video.VideoDecodeError):
    return message[len(prefix):] if message.startswith(prefix) else message
  return f"{type(error).__name__}: {message}"


def _decode_or_failure(path: str, options: video.FrameOptions, num_segments: int
                       ) -> DecodedVideo | ScoreFailure:
  try:
    return decode_video(path, options, num_segments=num_segments, decode_threads=1)
  except Exception as error:  # noqa: BLE001 — any bad file is reported, never fatal to the run
    return ScoreFailure(path, _failure_reason(path, error))


# ----------------------------------------------------------------------------- scoring


def score_videos(
    paths: Sequence[str], trained: TrainedModel, *, num_segments: int = 0,
    per_device_batch: int = DEFAULT_PER_DEVICE_BATCH, workers: int = 4,
    on_failure: Callable[[ScoreFailure], None] | None = None, progress: bool = False,
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
  fps = decoded.fps
  seconds = (lambda frame: frame / fps) if fps > 0 else (lambda frame: math.nan)
  segments = tuple(
      SegmentScore(start_frame=start, end_frame=stop, start_seconds=seconds(start),
                   end_seconds=seconds(stop), score=float(calibrated[1 + s]),
                   raw_score=float(raw[1 + s]))
      for s, (start, stop) in enumerate(decoded.segments))
  return VideoScore(path=path, score=float(calibrated[0]), raw_score=float(raw[0]),
                    num_frames=decoded.num_frames, fps=fps, segments=segments)


# ----------------------------------------------------------------------------- output


def scale_description(trained: TrainedModel) -> str:
  if trained.calibration is None:
    return "raw model output (this checkpoint carries no calibration; use --which best)"
  return f"label scale (calibration: {trained.calibration.describe()})"


def _number(value: float) -> Any:
  """JSON has no NaN: write null."""
  return None if isinstance(value, float) and not math.isfinite(value) else value


def format_json(scores: Sequence[VideoScore], failures: Sequence[ScoreFailure],
                trained: TrainedModel, num_segments: int) -> str:
  document = {
      "model": trained.describe(),
      "model_config": trained.config.model.to_dict(),
      "checkpoint": trained.checkpoint.to_dict(),
      "calibration": trained.calibration.to_dict() if trained.calibration is not None else None,
      "scale": scale_description(trained),
      "segments": num_segments,
      "videos": [
          {"path": s.path, "score": s.score, "raw_score": s.raw_score,
           "num_frames": s.num_frames, "fps": _number(s.fps),
           **({"segments": [{k: _number(v) for k, v in dataclasses.asdict(segment).items()}
                            for segment in s.segments]} if num_segments else {})}
          for s in scores],
      "failures": [dataclasses.asdict(failure) for failure in failures],
  }
  return json.dumps(document, indent=2, allow_nan=False) + "\n"


def format_csv(scores: Sequence[VideoScore], failures: Sequence[ScoreFailure],
               trained: TrainedModel, num_segments: int) -> str:
  """One row per file (failed files too, with `error` set); the model and checkpoint on every row,
  so a CSV still says what produced it after being concatenated or cut."""
  segment_columns = [f"segment_{s + 1}" for s in range(num_segments)]
  columns = ["path", "score", "raw_score", "num_frames", "fps", *segment_columns, "error",
             "checkpoint", "step", "model"]
  provenance = {"checkpoint": str(trained.checkpoint.path), "step": trained.checkpoint.step,
                "model": trained.describe()}
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
  writer.writeheader()
  for s in scores:
    writer.writerow({
        "path": s.path, "score": repr(s.score), "raw_score": repr(s.raw_score),
        "num_frames": s.num_frames, "fps": repr(s.fps), "error": "", **provenance,
        **{column: repr(segment.score) for column, segment in zip(segment_columns, s.segments)}})
  for failure in failures:
    writer.writerow({"path": failure.path, "error": failure.reason, **provenance})
  return buffer.getvalue()


def format_table(scores: Sequence[VideoScore], failures: Sequence[ScoreFailure],
                 trained: TrainedModel, num_segments: int) -> str:
  header = [f"model:       {trained.describe()}",
            f"checkpoint:  {trained.checkpoint.describe()}",
            f"scores:      {scale_description(trained)}", ""]
  titles = ["score", *(f"seg {s + 1}" for s in range(num_segments)), "file"]
  rows = [[f"{s.score:.3f}", *(f"{segment.score:.3f}" for segment in s.segments), s.path]
          for s in scores]
  rows += [["-", *("-" for _ in range(num_segments)), f"{failure.path}  (failed: {failure.reason})"]
           for failure in failures]
  widths = [max(len(row[i]) for row in [titles, *rows]) for i in range(len(titles) - 1)]

  def line(cells: list[str]) -> str:
    return "  ".join([*(cell.rjust(width) for cell, width in zip(cells, widths)), cells[-1]])

  rule = "  ".join(["-" * width for width in widths] + ["-" * 4])
  return "\n".join(header + [line(titles), rule] + [line(row) for row in rows]) + "\n"


FORMATTERS = {"table": format_table, "csv": format_csv, "json": format_json}


# ----------------------------------------------------------------------------- command


def add_subcommand(subparsers) -> None:
  """Registers `jaxvqa score`."""
  parser = subparsers.add_parser(
      "score", help="score video files with a trained model",
      description=("Scores video files with the model of a training run, on the label's scale "
                   "(VMAF 0-100 for compressed sets). Exit status: 0 all scored, 1 some file "
                   "could not be scored (reported on stderr), 2 bad invocation."),
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
  parser.add_argument("--format", choices=FORMATS, default="table", help="output format")
  parser.add_argument("--output", type=Path, default=None, metavar="FILE",
                      help="write the scores to FILE instead of stdout")
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
  from jaxvqa import inference

  if args.segments < 0:
    _error(f"--segments must be >= 0, got {args.segments}")
    return EXIT_USAGE
  for flag in ("batch_size", "workers", "devices"):
    value = getattr(args, flag)
    if value is not None and value < 1:
      _error(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
      return EXIT_USAGE
  paths, failures = find_videos(args.paths)
  num_inputs = len(paths) + len(failures)
  for failure in failures:
    _error(f"{failure.path}: {failure.reason}")
  if not paths:
    _error("no video files to score (directories are searched for "
           f"{', '.join(sorted(VIDEO_EXTENSIONS))})")
    return EXIT_USAGE
  try:
    trained = inference.load_trained_model(
        args.workdir, which=args.which, ema=not args.raw_weights, num_devices=args.devices)
  except (FileNotFoundError, ValueError) as error:
    _error(str(error))
    return EXIT_USAGE
  progress = not args.no_progress
  print(f"jaxvqa score: {len(paths)} files; model {trained.describe()}; checkpoint "
        f"{trained.checkpoint.describe()}; {trained.num_devices} device(s)", file=sys.stderr)

  def report(failure: ScoreFailure) -> None:
    tqdm.write(f"jaxvqa score: {failure.path}: {failure.reason}", file=sys.stderr)

  scores, decode_failures = score_videos(
      paths, trained, num_segments=args.segments,
      per_device_batch=args.batch_size or DEFAULT_PER_DEVICE_BATCH,
      workers=args.workers or os.cpu_count() or 1, on_failure=report, progress=progress)
  failures += decode_failures
  text = FORMATTERS[args.format](scores, failures, trained, args.segments)
  if args.output is None:
    sys.stdout.write(text)
    sys.stdout.flush()
  else:
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"jaxvqa score: wrote {len(scores)} scores to {args.output}", file=sys.stderr)
  if failures:
    _error(f"{len(failures)} of {num_inputs} inputs could not be scored: "
           f"{', '.join(failure.path for failure in failures)}")
    return EXIT_SOME_FAILED
  return EXIT_OK

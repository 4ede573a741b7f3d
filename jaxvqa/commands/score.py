"""`jaxvqa score PATH... --workdir DIR`: a quality score for every video file, on the label's scale.

The work is `jaxvqa.scoring` (see its docstring for the flow); this module reads the command line,
reports on stderr and chooses the exit status: 0 every file scored, 1 some input could not be
scored, 2 bad invocation (no checkpoint or a damaged one, nothing to score, an unusable --output),
130 interrupted. The library is imported when the command runs, so `jaxvqa --help` stays quick.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from jaxvqa.commands import model_arguments
from jaxvqa.scoring.names import file_key
from jaxvqa.scoring.records import FORMATS
from jaxvqa.scoring.sampling import Sampling

if TYPE_CHECKING:
  from jaxvqa.serve.inference import TrainedModel
  from jaxvqa.scoring.output_file import OutputFile
  from jaxvqa.scoring.provenance import Provenance
  from jaxvqa.scoring.results import ScoreFailure, VideoScore

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def add_subcommand(subparsers) -> None:
  """Registers `jaxvqa score`."""
  parser = subparsers.add_parser(
      "score",
      help="score video files with a trained model",
      description=(
          "Scores video files with the model of a training run, in its data set's own units "
          "(VMAF 0-100 for compressed sets, MOS 1-5 for KoNViD-1k, ...). Exit status: 0 all scored, 1 some input "
          "could not be scored (reported on stderr), 2 bad invocation, 130 interrupted."
      ),
      epilog="Names starting with '-' go after '--': jaxvqa score --workdir W -- -clip.mp4",
  )
  parser.add_argument(
      "paths",
      nargs="+",
      metavar="PATH",
      help="video files, directories (searched recursively) or glob patterns",
  )
  model_arguments.add_workdir(parser)
  model_arguments.add_checkpoint(parser)
  parser.add_argument(
      "--frames",
      type=int,
      default=None,
      metavar="N",
      help="frames the whole-video score samples: a multiple of the model's clip length T "
      "(N / T clips spread over the video, their mean scored; default T: one clip)",
  )
  segments = parser.add_mutually_exclusive_group()
  segments.add_argument(
      "--segments",
      type=int,
      default=0,
      metavar="N",
      help="also score N equal temporal segments of each video, and pool them",
  )
  segments.add_argument(
      "--segment-seconds",
      type=float,
      default=None,
      metavar="S",
      help="also score segments of S seconds by the stream's timestamps (the last one "
      "shorter), and pool them",
  )
  segments.add_argument(
      "--frame-scores",
      action="store_true",
      help="also score each frame the whole-video score samples, from the stretch of video "
      "it stands for, and pool them (the default of --format vmaf-json)",
  )
  parser.add_argument(
      "--display-size",
      default=None,
      metavar="WxH",
      help="decode every file at W×H first, as the model's training frames were made (ffmpeg's "
      "bicubic in yuv420p, as VMAF compares a ladder's rungs): give a ladder's top-rung size, "
      "e.g. 320x180, to score its lower-resolution rungs as displayed; files already W×H are "
      "read as without it",
  )
  parser.add_argument(
      "--allow-truncated",
      action="store_true",
      help="score a file that ended early (fewer frames than its container declares, or a "
      "stream that stops decoding) from the frames it has; its row says how many and carries "
      "a 'truncated' warning (default: such a file is an error)",
  )
  parser.add_argument(
      "--format",
      choices=FORMATS,
      default="table",
      help="output format; csv and jsonl stream to stdout row by row; vmaf-json lays each "
      "file out as libvmaf's JSON log",
  )
  parser.add_argument(
      "--output",
      type=Path,
      default=None,
      metavar="FILE",
      help="write the scores to FILE instead of stdout (results go to "
      "FILE.partial as they are made; FILE is replaced at the end)",
  )
  parser.add_argument(
      "--resume",
      action="store_true",
      help="continue an interrupted run: keep the scores in FILE.partial (made by "
      "the same model) and score only the other files",
  )
  parser.add_argument(
      "--batch-size",
      type=int,
      default=None,
      metavar="PER_DEVICE",
      help="clips per device per model call (default: "
      "jaxvqa.serve.inference.DEFAULT_PER_DEVICE_BATCH, as eval.py); scores do not "
      "depend on the device count as long as this stays the same",
  )
  parser.add_argument(
      "--workers", type=int, default=None, help="decode threads (default: CPU count)"
  )
  parser.add_argument(
      "--devices", type=int, default=None, help="use the first N devices (default: all)"
  )
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")
  parser.set_defaults(run=run)


def _error(message: str) -> None:
  print(f"jaxvqa score: {message}", file=sys.stderr)


def _sampling(args: argparse.Namespace, clip_length: int) -> Sampling:
  """The frames each score reads (raises ValueError naming the option that is wrong).

  --format vmaf-json lists a score per sampled frame: without another way to cut segments, it
  scores one per frame the whole-video score samples (--frame-scores).
  """
  segmented = args.segments or args.segment_seconds is not None or args.frame_scores
  return Sampling(
      clip_length=clip_length,
      frames=clip_length if args.frames is None else args.frames,
      segments=args.segments,
      segment_seconds=args.segment_seconds,
      frame_scores=args.frame_scores or (args.format == "vmaf-json" and not segmented),
  )


def _display_size(args: argparse.Namespace) -> tuple[int, int] | None:
  """--display-size WxH as (width, height), or None; ValueError naming the option and its value,
  RuntimeError when ffmpeg, which decodes at the display size, is missing."""
  if args.display_size is None:
    return None
  from jaxvqa.scoring.decoding import check_display_size

  bad = ValueError(
      f"--display-size {args.display_size!r}: expected WIDTHxHEIGHT in pixels, two integers "
      "from 1 to 16384 such as 320x180 (the size of a ladder's top rung)"
  )
  match = re.fullmatch(r"(\d+)[xX](\d+)", args.display_size)
  if match is None:
    raise bad
  try:
    return check_display_size((int(match[1]), int(match[2])))
  except ValueError:
    raise bad from None


def _argument_problem(args: argparse.Namespace) -> str | None:
  try:  # all but the model's clip length, which needs the model: checked again once it is loaded
    _sampling(args, clip_length=1)
    _display_size(args)
  except (ValueError, RuntimeError) as error:
    return str(error)
  for flag in ("batch_size", "workers", "devices"):
    value = getattr(args, flag)
    if value is not None and value < 1:
      return f"--{flag.replace('_', '-')} must be >= 1, got {value}"
  if args.resume and args.output is None:
    return "--resume needs --output FILE: the file the interrupted run was writing"
  return None


def run(args: argparse.Namespace) -> int:
  """`jaxvqa score`: see the module docstring for the exit status."""
  from jaxvqa.data.make_steps import VIDEO_EXTENSIONS
  from jaxvqa.scoring.discovery import find_videos
  from jaxvqa.scoring.names import printable_name
  from jaxvqa.scoring.output_file import OutputError

  problem = _argument_problem(args)
  if problem is not None:
    _error(problem)
    return EXIT_USAGE
  paths, failures = find_videos(args.paths)
  for failure in failures:
    _error(f"{printable_name(failure.path)}: {printable_name(failure.reason)}")
  if not paths:
    _error(
        "no video files to score (directories are searched for "
        f"{', '.join(sorted(VIDEO_EXTENSIONS))})"
    )
    return EXIT_USAGE
  output, stream, rows = None, sys.stdout, []
  try:
    output, stream, rows = _open_output(args, paths)
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
        _error(
            f"{output.rows} results are kept in {output.partial_shown}: run the same command "
            "with --resume to score only the other files"
        )
      output.close()
    if stream is not sys.stdout:
      with contextlib.suppress(OutputError):  # a failed write was reported where it happened
        stream.close()


def _open_output(
    args: argparse.Namespace, paths: list[str]
) -> tuple[OutputFile | None, TextIO, list[dict[str, Any]]]:
  """(--output as a file, or None; the stream written when it is not a file; the rows to resume).

  Raises OutputError: --output cannot be used as asked.
  """
  from jaxvqa.scoring.names import printable_name
  from jaxvqa.scoring.output_file import OutputError, OutputFile, OutputStream, check_output

  if args.output is None:
    return None, sys.stdout, []
  if check_output(args.output, paths):
    output = OutputFile(args.output, output_format=args.format, resume=args.resume)
    try:
      return output, sys.stdout, output.open()
    except BaseException:
      output.close()
      raise
  if args.resume:
    raise OutputError(
        f"--resume: --output {printable_name(str(args.output))} is not a "
        "regular file; there is nothing to resume from"
    )
  return None, OutputStream(args.output), []


def _load_and_score(
    args: argparse.Namespace,
    paths: list[str],
    failures: list[ScoreFailure],
    output: OutputFile | None,
    rows: list[dict[str, Any]],
    stream: TextIO,
) -> int:
  """Loads the model, then scores `paths` into `output` (or `stream`); see `run`."""
  from jaxvqa.serve import inference
  from jaxvqa.train import checkpointing
  from jaxvqa.scoring.provenance import Provenance

  try:
    trained = inference.load_model(
        args.workdir, which=args.which, ema=not args.raw_weights, num_devices=args.devices
    )
  except (checkpointing.CheckpointError, FileNotFoundError, ValueError) as error:
    _error(str(error))
    return EXIT_USAGE
  try:
    sampling = _sampling(args, trained.frames.num_frames)
  except ValueError as error:
    _error(str(error))
    return EXIT_USAGE
  provenance = Provenance.of(trained, sampling, _display_size(args))
  per_device_batch = args.batch_size or inference.DEFAULT_PER_DEVICE_BATCH
  kept = output.resume_from(rows, provenance, per_device_batch) if output is not None else []
  todo = _announce(args, paths, kept, output, trained)
  scores, failures = _score(args, todo, failures, trained, provenance, output, stream)
  if provenance.display_size is None:
    _note_upscaled(scores, trained.frames.size)
  _count_warnings(scores)
  return _finish(args, paths, kept + scores, failures, provenance, output, stream)


def _announce(
    args: argparse.Namespace,
    paths: list[str],
    kept: list[VideoScore],
    output: OutputFile | None,
    trained: TrainedModel,
) -> list[str]:
  """Says on stderr what the run will do; returns the paths still to score."""
  done = {file_key(score.path) for score in kept}
  todo = [path for path in paths if file_key(path) not in done]
  if args.resume:
    _error(
        f"resuming {output.resumed_from}: {len(paths) - len(todo)} of {len(paths)} files "
        "already scored by this model"
    )
  if output is not None and output.replaces:
    _error(
        f"{output.shown} exists and is replaced when scoring ends (until then results go to "
        f"{output.partial_shown})"
    )
  _error(
      f"{len(todo)} files to score; model {trained.describe()} [{trained.identity}]; "
      f"checkpoint {trained.checkpoint.describe()}; {trained.num_devices} device(s)"
  )
  return todo


def _score(
    args: argparse.Namespace,
    todo: list[str],
    failures: list[ScoreFailure],
    trained: TrainedModel,
    provenance: Provenance,
    output: OutputFile | None,
    stream: TextIO,
) -> tuple[list[VideoScore], list[ScoreFailure]]:
  """Scores `todo`, each row written at once to FILE.partial or a streamed --format; returns
  (scores, failures: those of the search, then those of decoding)."""
  from tqdm import tqdm

  from jaxvqa.serve import inference
  from jaxvqa.scoring.batches import score_videos
  from jaxvqa.scoring.names import printable_name
  from jaxvqa.scoring.records import STREAMED_FORMATS, RowStream, failure_record, score_record

  row_stream = (
      RowStream(stream, args.format, provenance.sampling)
      if output is None and args.format in STREAMED_FORMATS
      else None
  )

  per_device_batch = args.batch_size or inference.DEFAULT_PER_DEVICE_BATCH

  def emit(record: dict[str, Any]) -> None:
    if output is not None:  # the batch goes in FILE.partial only, for --resume to compare
      output.append({**record, "per_device_batch": per_device_batch})
    if row_stream is not None:
      row_stream.write(record)

  def report(failure: ScoreFailure) -> None:
    shown = f"{printable_name(failure.path)}: {printable_name(failure.reason)}"
    tqdm.write(f"jaxvqa score: {shown}", file=sys.stderr)
    emit(failure_record(failure, provenance))

  for failure in failures:
    emit(failure_record(failure, provenance))
  scores, decode_failures = score_videos(
      todo,
      trained,
      sampling=provenance.sampling,
      display_size=provenance.display_size,
      allow_truncated=args.allow_truncated,
      per_device_batch=per_device_batch,
      workers=args.workers or os.cpu_count() or 1,
      on_failure=report,
      on_result=lambda score: emit(score_record(score, provenance)),
      progress=not args.no_progress,
  )
  return scores, failures + decode_failures


def _note_upscaled(scores: list[VideoScore], input_size: int) -> None:
  """One line, once per run: how many files were below the model's input size, so upscaled by
  its own resize (PIL bicubic in RGB), which a ladder's lower rungs never were in training."""
  upscaled = [
      score for score in scores if score.decoded_size and min(score.decoded_size) < input_size
  ]
  if upscaled:
    _error(
        f"note: {len(upscaled)} of {len(scores)} files have a short side below the model's "
        f"{input_size} px input and were upscaled by its own resize; lower-resolution rungs of a "
        "ladder score as the model was trained with --display-size WxH, the size of the "
        "ladder's top rung"
    )


def _count_warnings(scores: list[VideoScore]) -> None:
  """One line: how many scores carry a warning (`scoring.validity`), by warning."""
  import collections

  from jaxvqa.scoring import validity

  warned = [score for score in scores if score.warnings]
  if warned:
    counts = collections.Counter(warning.name for score in warned for warning in score.warnings)
    unmeasured = any(validity.withholds_measurement(score.warnings) for score in warned)
    _error(
        f"warning: {len(warned)} of {len(scores)} scores are of inputs the model was not made "
        f"to judge ({', '.join(f'{name} {count}' for name, count in sorted(counts.items()))}): "
        "see the warnings column of their rows"
        + ("; flat and noise-like files score the worst on the scale" if unmeasured else "")
    )


def _finish(
    args: argparse.Namespace,
    paths: list[str],
    scores: list[VideoScore],
    failures: list[ScoreFailure],
    provenance: Provenance,
    output: OutputFile | None,
    stream: TextIO,
) -> int:
  """Writes the chosen format (FILE replaced, or the stream unless rows were streamed)."""
  from jaxvqa.scoring.names import printable_name
  from jaxvqa.scoring.records import FORMATTERS, STREAMED_FORMATS, write_text

  # In the order of the inputs, as an uninterrupted run writes them (kept rows of files no longer
  # among the inputs first).
  position = {file_key(path): number for number, path in enumerate(paths)}
  scores = sorted(scores, key=lambda score: position.get(file_key(score.path), -1))
  text = FORMATTERS[args.format](scores, failures, provenance)
  if output is not None:
    output.finish(text)
    _error(
        f"wrote {len(scores)} scores to {output.shown}"
        + (" (replaced the previous file)" if output.replaces else "")
    )
  elif args.format not in STREAMED_FORMATS:
    write_text(stream, text)
  if stream is not sys.stdout:
    stream.close()  # an OutputError when the last of it cannot be written (a full device)
  if failures:
    _error(
        f"{len(failures)} of {len(scores) + len(failures)} inputs could not be scored: "
        f"{', '.join(printable_name(failure.path) for failure in failures)}"
    )
    return EXIT_SOME_FAILED
  return EXIT_OK

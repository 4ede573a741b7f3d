"""The bundled ffmpeg as a video reader (`FfmpegReader`) and as the decoder at a display size.

    source ──ffmpeg──▶ frames uint8 [T, H, W, 3] RGB   (what decord cannot open or read)
    source ──ffmpeg: bicubic to W × H in yuv420p──▶ frames uint8 [T, H, W, 3] RGB at a display size

`FfmpegReader` runs the bundled ffmpeg (`jaxvqa.data.ffmpeg`, the imageio-ffmpeg binary: dav1d for
AV1, a native VVC decoder, ...), so every codec `make-dataset` offers (libx264, libx265, libsvtav1,
libvpx-vp9) is read by training, evaluation and `jaxvqa score`; `decode.open_reader` says when it
is used. It offers what this package uses of decord's reader: `len`, `get_avg_fps`, `get_batch`
(an ndarray rather than decord's NDArray), `reader[i]` and `get_frame_timestamp` (for
`decode.frame_start_seconds`), so callers need not know which decoder they hold.
- Open = one ffmpeg run, about 0.1 s for 132 frames of 720p AV1: the stream
  is copied to `framecrc` (one line per packet: the count, presentation
  timestamps and durations, without decoding) while a second output decodes
  only the first frame (`trim=end_frame=1`; `-frames` would end the whole
  output) to learn the display size after autorotation.
- A read = one ffmpeg run that decodes from the start to the last wanted
  frame and keeps the wanted ones (`select` on the decoded frame number n,
  presentation order, as decord counts) as rgb24 rawvideo through a pipe.
  Memory holds only the wanted frames (twice, briefly: pipe bytes, then the
  array); `iter_batches` reads them from the pipe a chunk at a time, so
  scoring holds one chunk however many frames a file's segments want. There is no seeking: a frame near the end of a long file costs a
  decode of everything before it, which is the price of not keeping a
  decoder in-process.
- Frames = packets (one shown frame per AV1 temporal unit, per VP9 WebM
  block, per H.26x access unit); a stream that decodes fewer frames than it
  has packets raises `TruncatedVideoError` saying where decoding stopped (one
  more ffmpeg run counts the frames that decode), and `first(count)` is the
  reader of the frames before that point.
- Rotation: ffmpeg's default autorotation, in the open and every read, so the
  display size and the frames agree; in-memory bytes go through a temporary
  file (MP4 needs a seekable input) deleted after each run.
- Pixels: ffmpeg's swscale to rgb24 (BT.601 limited range unless the stream
  says otherwise), the same conversion `tests/media.py`'s reference decode uses.

`read_frames_at_size` is a ladder's lower rung as VMAF compared it and as the model was trained on
it (`manifest.read_display_frames`), and as `jaxvqa score --display-size` reads every file: the
scaler and the pixel format it scales in are those of the ffmpeg that made and measured the ladder.
"""

from __future__ import annotations

import contextlib
import copy
import fractions
import os
import subprocess
import tempfile
from collections.abc import Iterator

import numpy as np

from jaxvqa.data import encoding, ffmpeg
from jaxvqa.data.video_source import (
    TruncatedVideoError,
    VideoDecodeError,
    VideoSource,
    describe_source,
)


class FfmpegDecodeError(VideoDecodeError):
  """`FfmpegReader` failed; `reason` is why, without the file name."""

  def __init__(self, name: str, reason: str):
    self.reason = reason
    super().__init__(f"{name}: {reason}")


class FramesMissingError(FfmpegDecodeError):
  """ffmpeg decoded fewer of the frames asked for than were asked for."""


class FfmpegReader:
  """The first video stream of `source`, decoded by the bundled ffmpeg (see the module docstring).

  Attributes:
    width, height: display size (after autorotation).
  """

  def __init__(self, source: VideoSource, *, num_threads: int = 0):
    """Probes the stream in one ffmpeg run. Raises FfmpegDecodeError when ffmpeg cannot read it."""
    self._source = source
    self._name = describe_source(source)
    self._threads = ["-threads", str(num_threads)] if num_threads > 0 else []
    listing = self._run(
        [
            "-map",
            "0:v:0",
            "-map",
            "0:v:0",
            "-c:v:0",
            "copy",
            "-c:v:1",
            "rawvideo",
            "-pix_fmt:v:1",
            "rgb24",
            "-filter:v:1",
            "trim=end_frame=1",
            "-f",
            "framecrc",
            "-",
        ]
    ).decode()
    headers = dict(
        line[1:].split(":", 1)
        for line in listing.splitlines()
        if line.startswith("#") and ":" in line
    )
    packets = [line.split(",") for line in listing.splitlines() if line.startswith("0,")]
    if "dimensions 1" not in headers or not packets:
      raise FfmpegDecodeError(self._name, "ffmpeg decoded no frame of its video stream")
    self.width, self.height = map(int, headers["dimensions 1"].strip().split("x"))
    # Packets come in decode order; frames are numbered in presentation order.
    table = np.array([[int(p[2]), int(p[3])] for p in packets], np.int64)
    pts, durations = table[np.argsort(table[:, 0], kind="stable")].T
    time_base = float(fractions.Fraction(headers["tb 0"].strip()))
    self._starts = pts * time_base
    self._ends = (pts + durations) * time_base
    span = self._ends[-1] - self._starts[0]
    if span > 0 and np.all(np.diff(pts) > 0):
      self._fps = len(pts) / span
    else:  # no usable timestamps: the rate ffmpeg's filter graph assumed (its time base)
      self._fps = float(1 / fractions.Fraction(headers["tb 1"].strip()))

  def __len__(self) -> int:
    return len(self._starts)

  def get_avg_fps(self) -> float:
    """Frames per second of stream time: frames / (end of the last − start of the first)."""
    return self._fps

  def get_frame_timestamp(self, indices) -> np.ndarray:
    """float64 [K, 2]: (start, end) seconds of each frame, from the packets' pts and durations."""
    indices = np.asarray(indices, np.int64).reshape(-1)
    return np.stack([self._starts[indices], self._ends[indices]], axis=1)

  def __getitem__(self, index: int) -> np.ndarray:
    return self.get_batch([index])[0]

  def get_batch(self, indices) -> np.ndarray:
    """uint8 [K, H, W, 3] RGB of frames `indices` (any order, repeats allowed), one ffmpeg run."""
    indices = np.asarray(indices, np.int64).reshape(-1)
    unique, inverse = np.unique(indices, return_inverse=True)
    if unique.size and (unique[0] < 0 or unique[-1] >= len(self)):
      raise IndexError(f"{self._name}: frame indices outside the video's {len(self)} frames")
    try:
      frames = _decode_selected(
          self._source, unique, (self.width, self.height), threads=self._threads, name=self._name
      )
    except FramesMissingError as error:
      raise TruncatedVideoError(self._name, self.count_decodable_frames(), len(self)) from error
    return frames[inverse]

  def iter_batches(
      self, unique: np.ndarray, chunk_frames: int
  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(frame numbers [C], uint8 [C, H, W, 3]) of the sorted distinct frames `unique`, in order,
    `chunk_frames` at a time from one ffmpeg run: `get_batch` without holding every frame."""
    unique = np.asarray(unique, np.int64).reshape(-1)
    if unique.size and (unique[0] < 0 or unique[-1] >= len(self)):
      raise IndexError(f"{self._name}: frame indices outside the video's {len(self)} frames")
    if not unique.size:
      return
    try:
      yield from _stream_selected(
          self._source,
          unique,
          (self.width, self.height),
          chunk_frames,
          threads=self._threads,
          name=self._name,
      )
    except FramesMissingError as error:
      raise TruncatedVideoError(self._name, self.count_decodable_frames(), len(self)) from error

  def count_decodable_frames(self) -> int:
    """How many frames decode, counted by one ffmpeg run that decodes the whole stream."""
    listing = self._run(["-map", "0:v:0", "-fps_mode", "passthrough", "-f", "framecrc", "-"])
    return sum(1 for line in listing.decode().splitlines() if line.startswith("0,"))

  def first(self, count: int) -> FfmpegReader:
    """This reader cut to its first `count` frames: the frames that decode before a corrupt or
    missing stretch (`TruncatedVideoError.frames_read`), sampled as a file of that length."""
    if not 1 <= count <= len(self):
      raise ValueError(f"{self._name}: cannot keep {count} of {len(self)} frames")
    cut = copy.copy(self)
    cut._starts, cut._ends = self._starts[:count], self._ends[:count]
    return cut

  def _run(self, output_args: list[str]) -> bytes:
    return _run_decoder(self._source, output_args, threads=self._threads, name=self._name)


@contextlib.contextmanager
def _launch_errors(name: str):
  """An ffmpeg that is not installed or cannot be started → FfmpegDecodeError naming the file."""
  try:
    yield
  except ImportError as error:
    raise FfmpegDecodeError(
        name, f"imageio-ffmpeg is not installed ({error}); pip install imageio-ffmpeg"
    ) from error
  except OSError as error:
    raise FfmpegDecodeError(name, f"could not run ffmpeg: {error}") from error


def _run_decoder(source: VideoSource, output_args: list[str], *, threads: list[str], name: str):
  """ffmpeg's stdout for `-i source` then `output_args`; FfmpegDecodeError with its reason."""
  with _launch_errors(name):
    try:
      with ffmpeg_input(source) as path:
        return ffmpeg.run_ffmpeg(
            ["-v", "error", *threads, "-i", path, *output_args], capture_stdout=True
        ).stdout
    except ffmpeg.FfmpegError as error:
      raise FfmpegDecodeError(name, _ffmpeg_failure_reason(error.stderr)) from error


# ffmpeg's expression parser refuses a `select` of more than 100 terms ("Error while parsing
# expression"): past this many runs of frames, the nearest runs are merged and the frames between
# them read and dropped here.
MAX_SELECT_RUNS = 96


def _selection(unique: np.ndarray) -> tuple[list[str], np.ndarray]:
  """(`select` filter, the frames it passes): runs of consecutive frames of `unique` as
  between(n,a,b) terms, at most MAX_SELECT_RUNS of them, so the frames passed are `unique` and,
  where runs were merged, the frames between them (a superset, in order)."""
  breaks = np.flatnonzero(np.diff(unique) != 1) + 1
  firsts = unique[np.concatenate([[0], breaks])]
  lasts = unique[np.concatenate([breaks - 1, [unique.size - 1]])]
  if firsts.size > MAX_SELECT_RUNS:
    # Keep the widest gaps between runs; close the others.
    gaps = firsts[1:] - lasts[:-1]
    kept = np.sort(np.argsort(-gaps, kind="stable")[: MAX_SELECT_RUNS - 1])
    firsts = firsts[np.concatenate([[0], kept + 1])]
    lasts = lasts[np.concatenate([kept, [lasts.size - 1]])]
  expression = "+".join(f"between(n,{first},{last})" for first, last in zip(firsts, lasts))
  passed = np.concatenate([np.arange(first, last + 1) for first, last in zip(firsts, lasts)])
  return [f"select='{expression}'"], passed


def _selected_output(
    selection: list[str], count: int | None, filters: tuple[str, ...]
) -> list[str]:
  """ffmpeg's output arguments: the `selection` filter, then `filters`, `count` frames at most
  (None: all), as rgb24 rawvideo on stdout."""
  chain = ",".join([*selection, *filters])
  return [
      "-map",
      "0:v:0",
      *(["-vf", chain] if chain else []),
      "-fps_mode",
      "passthrough",
      *(["-frames:v", str(count)] if count is not None else []),
      "-f",
      "rawvideo",
      "-pix_fmt",
      "rgb24",
      "-",
  ]


def _frames_missing(name: str, unique: np.ndarray, found: int) -> FramesMissingError:
  missing = unique[found:].tolist()
  return FramesMissingError(
      name,
      f"ffmpeg decoded {found} of the {unique.size} frames asked for (frames "
      f"{missing[:5]} missing): truncated or corrupt stream",
  )


def _decode_selected(
    source: VideoSource,
    unique: np.ndarray | None,
    size: tuple[int, int],
    *,
    filters: tuple[str, ...] = (),
    threads: list[str],
    name: str,
) -> np.ndarray:
  """uint8 [K, H, W, 3] rgb24 of the frames `unique` (sorted distinct display-order numbers; None:
  every frame) in one ffmpeg run: decoded, kept by `select`, then passed through `filters`, whose
  output is `size` = (width, height).

  Frames are numbered as decoded (n, presentation order, as decord counts). Raises
  FfmpegDecodeError when fewer frames come out than were asked for.
  """
  selection, passed = ([], None) if unique is None else _selection(unique)
  count = None if passed is None else passed.size
  raw = _run_decoder(
      source, _selected_output(selection, count, filters), threads=threads, name=name
  )
  width, height = size
  frame_bytes = height * width * 3
  decoded = len(raw) // frame_bytes
  frames = np.frombuffer(raw, np.uint8, count=decoded * frame_bytes).reshape(
      decoded, height, width, 3
  )
  if passed is None:
    return frames
  wanted = np.searchsorted(passed, unique)
  found = int(np.searchsorted(wanted, decoded))  # the wanted frames that did come out
  if found < unique.size:
    raise _frames_missing(name, unique, found)
  return frames if passed.size == unique.size else frames[wanted]


def _stream_selected(
    source: VideoSource,
    unique: np.ndarray,
    size: tuple[int, int],
    chunk_frames: int,
    *,
    threads: list[str],
    name: str,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """`_decode_selected` read from ffmpeg's pipe a frame at a time and handed on `chunk_frames` at
  a time: (frame numbers [C], uint8 [C, H, W, 3]) as they are decoded, so memory holds one chunk,
  not every frame asked for.

  Raises FramesMissingError (after the chunks that did decode) when fewer frames come out.
  """
  width, height = size
  frame_bytes = height * width * 3
  selection, passed = _selection(unique)
  is_wanted = np.isin(passed, unique)
  found = 0  # frames of `unique` read so far
  chunk: list[np.ndarray] = []
  with _launch_errors(name):
    with ffmpeg_input(source) as path, tempfile.TemporaryFile() as errors:
      command = [
          ffmpeg.ffmpeg_exe(),
          *("-hide_banner", "-nostdin", "-y", "-v", "error", *threads, "-i", path),
          *_selected_output(selection, passed.size, ()),
      ]
      process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors)
      try:
        for wanted in is_wanted:
          raw = process.stdout.read(frame_bytes)
          if len(raw) < frame_bytes:
            break
          if not wanted:
            continue
          chunk.append(np.frombuffer(raw, np.uint8).reshape(height, width, 3))
          if len(chunk) == chunk_frames:
            yield unique[found : found + len(chunk)], np.stack(chunk)
            found += len(chunk)
            chunk = []
        if chunk:
          yield unique[found : found + len(chunk)], np.stack(chunk)
          found += len(chunk)
        process.stdout.read()  # ffmpeg exits once its pipe is drained
      finally:
        if process.poll() is None:
          process.kill()
        process.stdout.close()
        returncode = process.wait()
      errors.seek(0)
      stderr = errors.read().decode("utf-8", errors="replace")
  if returncode != 0:
    raise FfmpegDecodeError(name, _ffmpeg_failure_reason(stderr))
  if found < unique.size:
    raise _frames_missing(name, unique, found)


def read_frames_at_size(
    source: VideoSource,
    indices,
    size: tuple[int, int],
    *,
    num_threads: int = 0,
) -> np.ndarray:
  """Frames `indices` at `size` = (width, height), made as the training frames of a ladder were:
  decoded by the bundled ffmpeg, scaled by `encoding.upscale_filter` (bicubic, in yuv420p: how
  VMAF compared a lower rung with its source, and how a player shows it), then rgb24.

  A yuv420p stream already at `size` passes the scaler untouched: its frames are those of a plain
  ffmpeg decode. `manifest.read_display_frames` (what training decodes) and `jaxvqa score
  --display-size` both read through this function.

  Args:
    source: a file path, or the encoded file's contents.
    indices: display-order frame numbers (any order, repeats allowed); None for every frame.
    size: (width, height) of the output frames.
    num_threads: decoder threads (0 = ffmpeg's choice).
  Returns:
    uint8 [T, height, width, 3] RGB.
  Raises:
    VideoDecodeError: ffmpeg cannot run or read the stream, or decodes fewer frames than asked for.
    IndexError: a negative frame number.
  """
  name = describe_source(source)
  threads = ["-threads", str(num_threads)] if num_threads > 0 else []
  filters = (encoding.upscale_filter(*size),)
  if indices is None:
    return _decode_selected(source, None, size, filters=filters, threads=threads, name=name)
  indices = np.asarray(indices, np.int64).reshape(-1)
  if (indices < 0).any():
    raise IndexError(f"{name}: negative frame indices {indices[indices < 0].tolist()[:5]}")
  unique, inverse = np.unique(indices, return_inverse=True)
  if not unique.size:
    return np.zeros((0, size[1], size[0], 3), np.uint8)
  frames = _decode_selected(source, unique, size, filters=filters, threads=threads, name=name)
  return frames[inverse]


def _ffmpeg_failure_reason(stderr: str) -> str:
  """Why an `FfmpegReader` run failed, from ffmpeg's stderr."""
  if "matches no streams" in stderr:
    return "no video stream"
  # Our output is always stdout, so "Error opening output file -." and the option-parsing lines
  # around it only echo the cause above them ("no decoder found for: none").
  echoes = (
      "Error opening output file",
      "Error parsing options for output file",
      "Failed to set value",
  )
  return ffmpeg.last_error_lines(
      "\n".join(line for line in stderr.splitlines() if not line.lstrip().startswith(echoes))
  )


@contextlib.contextmanager
def ffmpeg_input(source: VideoSource) -> Iterator[str]:
  """A path ffmpeg can open for `source`: the file, or a temporary copy of in-memory bytes.

  A /dev/fd/N name (how `jaxvqa score` reaches files whose names are not UTF-8) means the
  descriptor of this process, which ffmpeg does not inherit: it becomes the file's own path.
  """
  if not isinstance(source, (bytes, bytearray, memoryview)):
    path = os.fspath(source)
    yield os.path.realpath(path) if path.startswith("/dev/fd/") else path
    return
  handle, path = tempfile.mkstemp(prefix="jaxvqa-decode-")
  try:
    with os.fdopen(handle, "wb") as file:
      file.write(source)
    yield path
  finally:
    os.remove(path)

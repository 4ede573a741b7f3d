"""Decode video (decord, falling back to ffmpeg): the first stage of the data flow.

    source (path or encoded bytes) ──decord, else ffmpeg──▶ frames uint8 [T, H, W, 3] RGB
    source ──ffmpeg: bicubic to W × H in yuv420p──▶ frames uint8 [T, H, W, 3] RGB at a display size

Which frames a clip takes and how they become model input is `jaxvqa.data.video`.

The second line is `read_frames_at_size`: a ladder's lower rung as VMAF compared it and as the
model was trained on it (`manifest.read_display_frames`), and as `jaxvqa score --display-size`
reads every file. It always runs the bundled ffmpeg: the scaler and the pixel format it scales in
are those of the ffmpeg that made and measured the ladder.

Two decoders. decord (0.6.0, its own FFmpeg of 2021) is the fast path: one
process, seeks, any number of reads per open file. Whatever it cannot open is
read by `FfmpegReader`, which runs the bundled ffmpeg (`jaxvqa.data.ffmpeg`,
the imageio-ffmpeg binary: dav1d for AV1, a native VVC decoder, ...), so every
codec `make-dataset` offers (libx264, libx265, libsvtav1, libvpx-vp9) is
read by training, evaluation and `jaxvqa score`. `open_reader` picks:
- decord first. Every codec its FFmpeg lacks (AV1, VVC) already fails at open
  ("cannot find video stream"), so the open failure is the trigger and no list
  of codecs is kept. A file decord opens is never handed to ffmpeg, not even
  when a later read fails (a truncated stream stays an error).
- then ffmpeg; when it fails too, the error gives decord's reason, then
  ffmpeg's ("...; the bundled ffmpeg could not read it either: ...").
`FfmpegReader` offers what this package uses of decord's reader: `len`,
`get_avg_fps`, `get_batch` (an ndarray rather than decord's NDArray),
`reader[i]` and `get_frame_timestamp` (for `frame_start_seconds`), so callers
need not know which decoder they hold.
- Open = one ffmpeg run, about 0.1 s for 132 frames of 720p AV1: the stream
  is copied to `framecrc` (one line per packet: the count, presentation
  timestamps and durations, without decoding) while a second output decodes
  only the first frame (`trim=end_frame=1`; `-frames` would end the whole
  output) to learn the display size after autorotation.
- A read = one ffmpeg run that decodes from the start to the last wanted
  frame and keeps the wanted ones (`select` on the decoded frame number n,
  presentation order, as decord counts) as rgb24 rawvideo through a pipe.
  Memory holds only the wanted frames (twice, briefly: pipe bytes, then the
  array). There is no seeking: a frame near the end of a long file costs a
  decode of everything before it, which is the price of not keeping a
  decoder in-process.
- Frames = packets (one shown frame per AV1 temporal unit, per VP9 WebM
  block, per H.26x access unit); a stream that decodes fewer frames than it
  has packets raises VideoDecodeError naming the frames asked for.
- Rotation: ffmpeg's default autorotation, in the open and every read, so the
  display size and the frames agree; in-memory bytes go through a temporary
  file (MP4 needs a seekable input) deleted after each run.
- Pixels: ffmpeg's swscale to rgb24 (BT.601 limited range unless the stream
  says otherwise), the same conversion `tests/media.py`'s reference decode uses.

Behaviour verified on this decord build (0.6.0, bundled FFmpeg) and pinned by
tests/test_video.py:
- `source` may be the encoded file's bytes: decord reads `io.BytesIO`.
- Rotation metadata in MP4/MOV (the display matrix phones write) IS applied by
  decord: frames come back in display orientation, identical to ffmpeg's
  autorotation. Matroska rotation (rare) is NOT applied by decord's FFmpeg;
  we accept that rather than pay an ffmpeg probe per read.
- decord mislays narrow frames (width < 64 where the 64-byte-padded row
  stride holds ≥ 4 bytes per pixel, e.g. 16, 32, 44–48 px): `get_batch`
  fails, so those are read frame by frame and unpadded (`_read_one_padded`).
- Grey and 10-bit (yuv420p10le, H.264 High 10 / HEVC Main 10) sources decode to
  8-bit rgb24; odd sizes (97×75) decode at their true size.
- decord's FFmpeg has no AV1 or VVC decoder: it raises "cannot find video
  stream" at open, and those files go to `FfmpegReader`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fractions
import io
import os
import tempfile
from collections.abc import Iterator

import numpy as np

from jaxvqa.data import encoding, ffmpeg

VideoSource = str | os.PathLike | bytes


class VideoDecodeError(Exception):
  """A video could not be opened or read; the message names the file and why."""


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """Cheap metadata of a video stream (display orientation: rotation applied)."""

  num_frames: int
  fps: float
  width: int
  height: int
  duration: float  # seconds, num_frames / fps


def describe_source(source: VideoSource) -> str:
  """A name for messages: the path, or '<N bytes in memory>'."""
  if isinstance(source, (bytes, bytearray, memoryview)):
    return f"<{len(source)} bytes in memory>"
  return os.fspath(source)


def _decord():
  import decord
  # decord's C++ side otherwise prints every FFmpeg complaint to stderr; our
  # exceptions carry the reason instead.
  decord.logging.set_level(decord.logging.QUIET)
  return decord


def _decode_failure_reason(error: Exception, header: bytes = b"") -> str:
  """Why decord failed, in words; `header` = the file's first bytes, when known."""
  message = str(error).strip()
  detail = message.splitlines()[-1].strip()[:200] if message else type(error).__name__
  if "cannot find video stream" in message:
    return "no video stream decord can decode (unknown codec, or audio only)"
  if "av_read_frame failed" in message or "Check failed" in message:
    return f"truncated or corrupt stream ({detail})"
  return unopenable_reason(header) or f"not a video decord can open ({detail})"


def unopenable_reason(header: bytes) -> str | None:
  """For a file no demuxer opens: what its first bytes say it was meant to be.

  Decoders report only "invalid data"; the container's magic bytes tell a
  cut-off video from something that never was one. None when unrecognised.
  """
  if header[4:8] == b"ftyp":
    return (
        "an MP4/MOV whose index (moov) cannot be read: truncated, e.g. an "
        "interrupted copy; re-copy or re-encode it"
    )
  if header[:4] == b"\x1a\x45\xdf\xa3":
    return "a Matroska/WebM file that cannot be opened: truncated or corrupt"
  return None


def read_header(source: VideoSource) -> bytes:
  """The first 12 bytes of a file or of in-memory bytes (b"" when unreadable)."""
  if isinstance(source, (bytes, bytearray, memoryview)):
    return bytes(source[:12])
  try:
    with open(source, "rb") as file:
      return file.read(12)
  except OSError:
    return b""


def open_reader(source: VideoSource, *, num_threads: int = 0):
  """Opens a reader on a path or on encoded bytes: decord's, else `FfmpegReader`.

  See the module docstring for when ffmpeg is used. Both readers offer `len`,
  `get_avg_fps`, `get_batch`, `reader[i]` and `get_frame_timestamp`.

  Args:
    source: a file path, or the encoded file's contents.
    num_threads: decoder threads; 0 lets the decoder choose. Loaders running many
      worker processes should pass 1.
  Raises:
    VideoDecodeError: not found, zero bytes, not a video, truncated, a codec
      neither decord nor ffmpeg decodes; the message gives both reasons.
  """
  decord = _decord()
  name = describe_source(source)
  if isinstance(source, (bytes, bytearray, memoryview)):
    if len(source) == 0:
      raise VideoDecodeError(f"{name}: empty (0 bytes); the stored video is missing")
    handle = io.BytesIO(bytes(source))
  else:
    path = os.fspath(source)
    if not os.path.exists(path):
      raise VideoDecodeError(f"{name}: file not found")
    if os.path.isdir(path):
      raise VideoDecodeError(f"{name}: is a directory, not a video file")
    if os.path.getsize(path) == 0:
      raise VideoDecodeError(f"{name}: empty file (0 bytes); re-copy or re-encode it")
    handle = path
  try:
    reader = decord.VideoReader(handle, ctx=decord.cpu(0), num_threads=num_threads)
  except Exception as error:  # decord raises RuntimeError or DECORDError
    decord_reason = _decode_failure_reason(error, read_header(source))
    try:
      return FfmpegReader(source, num_threads=num_threads)
    except VideoDecodeError as ffmpeg_error:
      raise VideoDecodeError(
          f"{name}: {decord_reason}; the bundled ffmpeg could not read it either: "
          f"{ffmpeg_error.reason}"
      ) from error
  if len(reader) == 0:
    raise VideoDecodeError(f"{name}: the video stream has no frames")
  return reader


class FfmpegDecodeError(VideoDecodeError):
  """`FfmpegReader` failed; `reason` is why, without the file name."""

  def __init__(self, name: str, reason: str):
    self.reason = reason
    super().__init__(f"{name}: {reason}")


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
    frames = _decode_selected(
        self._source, unique, (self.width, self.height), threads=self._threads, name=self._name
    )
    return frames[inverse]

  def _run(self, output_args: list[str]) -> bytes:
    return _run_decoder(self._source, output_args, threads=self._threads, name=self._name)


def _run_decoder(source: VideoSource, output_args: list[str], *, threads: list[str], name: str):
  """ffmpeg's stdout for `-i source` then `output_args`; FfmpegDecodeError with its reason."""
  try:
    with _ffmpeg_input(source) as path:
      return ffmpeg.run_ffmpeg(
          ["-v", "error", *threads, "-i", path, *output_args], capture_stdout=True
      ).stdout
  except ffmpeg.FfmpegError as error:
    raise FfmpegDecodeError(name, _ffmpeg_failure_reason(error.stderr)) from error
  except ImportError as error:
    raise FfmpegDecodeError(
        name, f"imageio-ffmpeg is not installed ({error}); pip install imageio-ffmpeg"
    ) from error
  except OSError as error:
    raise FfmpegDecodeError(name, f"could not run ffmpeg: {error}") from error


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
  selection: list[str] = []
  if unique is not None:
    # Runs of consecutive frames as between(n,a,b): the expression is evaluated for every
    # decoded frame, so its length matters on long files.
    breaks = np.flatnonzero(np.diff(unique) != 1) + 1
    runs = [(run[0], run[-1]) for run in np.split(unique, breaks) if run.size]
    expression = "+".join(f"between(n,{first},{last})" for first, last in runs)
    selection = [f"select='{expression}'"]
  chain = ",".join([*selection, *filters])
  raw = _run_decoder(
      source,
      [
          "-map",
          "0:v:0",
          *(["-vf", chain] if chain else []),
          "-fps_mode",
          "passthrough",
          *(["-frames:v", str(unique.size)] if unique is not None else []),
          "-f",
          "rawvideo",
          "-pix_fmt",
          "rgb24",
          "-",
      ],
      threads=threads,
      name=name,
  )
  width, height = size
  frame_bytes = height * width * 3
  decoded = len(raw) // frame_bytes
  if unique is not None and decoded < unique.size:
    missing = unique[decoded:].tolist()
    raise FfmpegDecodeError(
        name,
        f"ffmpeg decoded {decoded} of the {unique.size} frames asked for (frames "
        f"{missing[:5]} missing): truncated or corrupt stream",
    )
  return np.frombuffer(raw, np.uint8, count=decoded * frame_bytes).reshape(
      decoded, height, width, 3
  )


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
def _ffmpeg_input(source: VideoSource) -> Iterator[str]:
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


def probe(source: VideoSource, *, num_threads: int = 0) -> VideoInfo:
  """Frame count, frame rate and display size of `source` (decodes one frame)."""
  reader = open_reader(source, num_threads=num_threads)
  try:
    height, width = (
        (reader.height, reader.width) if isinstance(reader, FfmpegReader) else reader[0].shape[:2]
    )
  except Exception as error:
    raise VideoDecodeError(f"{describe_source(source)}: {_decode_failure_reason(error)}") from error
  num_frames = len(reader)
  fps = float(reader.get_avg_fps())
  duration = num_frames / fps if fps > 0 else 0.0
  return VideoInfo(
      num_frames=num_frames, fps=fps, width=int(width), height=int(height), duration=duration
  )


def read_frames(source: VideoSource, indices, *, num_threads: int = 0) -> np.ndarray:
  """Decodes the frames at `indices` (any order, repeats allowed).

  Args:
    source: a file path, or the encoded file's contents.
    indices: int [T] frame numbers in [0, num_frames).
    num_threads: decoder threads (0 = the decoder's choice).
  Returns:
    uint8 [T, H, W, 3] RGB in display orientation.
  Raises:
    VideoDecodeError: unreadable file or stream.
    IndexError: an index outside the video, naming the file and its length.
  """
  reader = open_reader(source, num_threads=num_threads)
  return read_from_reader(reader, indices, describe_source(source))


def read_from_reader(reader, indices, name: str) -> np.ndarray:
  """`read_frames` on an open reader (reads of one file may share it); `name` is for errors."""
  indices = np.asarray(indices, dtype=np.int64).reshape(-1)
  num_frames = len(reader)
  bad = indices[(indices < 0) | (indices >= num_frames)]
  if bad.size:
    raise IndexError(
        f"{name}: frame indices {bad.tolist()[:5]} outside the video's {num_frames} frames"
    )
  # Decode each distinct frame once, in file order (cheapest seeking).
  unique, inverse = np.unique(indices, return_inverse=True)
  if isinstance(reader, FfmpegReader):
    return reader.get_batch(unique)[inverse]
  try:
    frames = reader.get_batch(unique.tolist()).asnumpy()
  except Exception as error:
    if "DECORDArrayCopyFromTo" not in str(error):
      raise VideoDecodeError(f"{name}: {_decode_failure_reason(error)}") from error
    frames = np.stack([_read_one_padded(reader, int(index), name) for index in unique])
  return frames[inverse]


def _read_one_padded(reader, index: int, name: str) -> np.ndarray:
  """One frame, undoing decord's row padding for narrow frames.

  decord takes channels = row stride // width, with the stride padded to 64
  bytes; for narrow frames (e.g. 48 px wide: 144 → 192 bytes) that yields 4
  "channels", and `get_batch` then fails. The buffer itself is right: rows of
  `stride` bytes whose first 3·width bytes are the RGB pixels.
  """
  try:
    padded = reader[index].asnumpy()
  except Exception as error:
    raise VideoDecodeError(f"{name}: {_decode_failure_reason(error)}") from error
  height, width = padded.shape[:2]
  return np.ascontiguousarray(padded.reshape(height, -1)[:, : 3 * width]).reshape(height, width, 3)


def frame_start_seconds(reader) -> np.ndarray:
  """When each frame of an open reader starts, from the stream's timestamps: float64 [F + 1].

  Entry k < F is frame k's presentation time and entry F is when the last frame ends, all in
  seconds from the first frame. A variable-frame-rate clip (phones, screen recordings) does not
  follow frame / mean fps: a frame held for 0.5 s among frames of 0.04 s would shift every later
  time. decord's own end time of a frame is its start plus its packet's duration, which for
  variable rates is not when the next frame starts; only the last frame's end is taken from it.
  Streams whose timestamps are missing or not increasing fall back to frame / mean fps.
  decord keeps timestamps as float32; they are rounded to the microsecond (0.52, not 0.51999998).
  """
  num_frames = len(reader)
  spans = np.asarray(reader.get_frame_timestamp(np.arange(num_frames)), np.float64).reshape(-1, 2)
  starts = np.append(spans[:, 0], spans[-1, 1])
  if np.all(np.isfinite(starts)) and np.all(np.diff(starts) > 0):
    return np.round(starts - starts[0], 6)
  fps = float(reader.get_avg_fps())
  return (
      np.arange(num_frames + 1, dtype=np.float64) / fps
      if fps > 0
      else np.full(num_frames + 1, np.nan)
  )

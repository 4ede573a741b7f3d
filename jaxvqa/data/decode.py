"""Decode video (decord, falling back to ffmpeg): the first stage of the data flow.

    source (path or encoded bytes) ──decord, else ffmpeg──▶ frames uint8 [T, H, W, 3] RGB

Which frames a clip takes and how they become model input is `jaxvqa.data.video`; the bundled
ffmpeg as a reader, and as the decoder at a display size (`read_frames_at_size`), is
`jaxvqa.data.ffmpeg_reader`; whether a file holds the frames its container declares is
`jaxvqa.data.stream_length`.

Two decoders. decord (0.6.0, its own FFmpeg of 2021) is the fast path: one
process, seeks, any number of reads per open file. Whatever it cannot open or
read is read by `FfmpegReader` (the bundled ffmpeg). `open_reader` picks:
- decord first. Every codec its FFmpeg lacks (AV1, VVC) already fails at open
  ("cannot find video stream"), so the open failure is the trigger and no list
  of codecs is kept.
- then ffmpeg; when it fails too, the error gives decord's reason, then
  ffmpeg's ("...; the bundled ffmpeg could not read it either: ...").
A read that fails after decord opened the file goes to ffmpeg too (`read_chosen_frames`):
decord gives up on streams ffmpeg decodes whole (MPEG-TS and M2TS near their end: "Unable to
handle EOF"; a damaged packet), and where ffmpeg also stops early, the error says at which frame
(`TruncatedVideoError`), never decord's C++ check text.

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
- decord counts a file's frames by its packets, so a file cut short opens with the frames
  that are left; `stream_length` compares them with what the container declares.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
from collections.abc import Callable, Iterator

import numpy as np

from jaxvqa.data.ffmpeg_reader import FfmpegReader
from jaxvqa.scoring.names import has_control_characters
from jaxvqa.data.video_source import (
    TruncatedVideoError,
    VideoDecodeError,
    VideoSource,
    describe_source,
    read_header,
    unopenable_reason,
)


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """Cheap metadata of a video stream (display orientation: rotation applied)."""

  num_frames: int
  fps: float
  width: int
  height: int
  duration: float  # seconds, num_frames / fps


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
  if any(sign in message for sign in ("av_read_frame failed", "Check failed", "Unable to handle")):
    # decord's own text is a C++ source line and a check expression: nothing a user can act on.
    return "corrupt or truncated stream: decord stopped decoding it"
  return unopenable_reason(header) or f"not a video decord can open ({detail})"


@contextlib.contextmanager
def _name_fit_to_print(handle: str | io.BytesIO) -> Iterator[str | io.BytesIO]:
  """`handle`, or for a path whose name holds control characters (a newline, ESC) the same file
  as /proc/self/fd/N while the block runs: decord prints the name it fails to open on stderr
  itself, where ESC would drive the terminal and a newline forge a line. Our own message, which
  follows, names the file escaped. decord keeps its own descriptor once open."""
  if not (isinstance(handle, str) and has_control_characters(handle)):
    yield handle
    return
  descriptor = os.open(handle, os.O_RDONLY)
  try:
    yield f"/proc/self/fd/{descriptor}" if os.path.isdir("/proc/self/fd") else handle
  finally:
    os.close(descriptor)


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
    with _name_fit_to_print(handle) as printable_handle:
      reader = decord.VideoReader(printable_handle, ctx=decord.cpu(0), num_threads=num_threads)
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
  return read_chosen_frames(source, reader, lambda _: indices, num_threads=num_threads)[2]


ChooseFrames = Callable[[object], np.ndarray]  # an open reader → the frame numbers to read of it
# Called with (frame numbers [C], their frames uint8 [C, H, W, 3]) as each chunk is decoded.
ChunkSink = Callable[[np.ndarray, np.ndarray], None]
# Frames decoded at a time by `stream_chosen_frames`: peak memory holds this many full-size frames,
# however many a file's segments read.
DEFAULT_CHUNK_FRAMES = 16


def read_chosen_frames(
    source: VideoSource,
    reader,
    choose: ChooseFrames,
    *,
    num_threads: int = 0,
    allow_truncated: bool = False,
) -> tuple[object, np.ndarray, np.ndarray]:
  """(reader, indices, frames): the frames `choose(reader)` of an open reader of `source`.

  When decord opened the file but cannot read it (MPEG-TS near its end, a damaged packet), the
  bundled ffmpeg reads it, as it reads a file decord cannot open, and `choose` picks again from
  that reader, whose frame count can differ (it is then the reader returned).

  allow_truncated: where ffmpeg stops decoding before the last frame, read the frames before that
    point (`choose` picks from them) instead of raising TruncatedVideoError.
  Raises:
    TruncatedVideoError: decoding stops before the frames chosen (says at which frame).
    VideoDecodeError: ffmpeg cannot read the file either (both reasons given).
    IndexError: `choose` picked frames outside the video.
  """
  name = describe_source(source)
  frames: list[np.ndarray] = []

  def read(reader, indices):
    frames[:] = [read_from_reader(reader, indices, name)]

  reader, indices = _read_falling_back(source, reader, choose, read, num_threads, allow_truncated)
  return reader, indices, frames[0]


def stream_chosen_frames(
    source: VideoSource,
    reader,
    choose: ChooseFrames,
    on_chunk: ChunkSink,
    *,
    num_threads: int = 0,
    allow_truncated: bool = False,
) -> tuple[object, np.ndarray]:
  """`read_chosen_frames` without keeping the frames: (reader, the sorted distinct indices of
  `choose(reader)`), the frames handed to `on_chunk` in file order, `DEFAULT_CHUNK_FRAMES` at a
  time, as they are decoded (`stream_from_reader`).

  A reader chosen again (ffmpeg's after decord failed partway, or the frames before a truncation)
  calls `choose` again: the caller's sign to forget the chunks it got before.
  """
  name = describe_source(source)

  def read(reader, indices):
    stream_from_reader(reader, indices, name, on_chunk)

  reader, indices = _read_falling_back(source, reader, choose, read, num_threads, allow_truncated)
  return reader, np.unique(indices)


def _read_falling_back(source, reader, choose, read, num_threads, allow_truncated):
  """(reader, indices) after `read(reader, indices)` of `indices = choose(reader)` succeeded on
  decord's reader or, where that failed, on the bundled ffmpeg's (see `read_chosen_frames`)."""
  indices = np.asarray(choose(reader), np.int64)
  if not isinstance(reader, FfmpegReader):
    try:
      read(reader, indices)
      return reader, indices
    except VideoDecodeError as decord_error:
      try:
        reader = FfmpegReader(source, num_threads=num_threads)
      except VideoDecodeError as ffmpeg_error:
        raise VideoDecodeError(
            f"{decord_error}; the bundled ffmpeg could not read it either: {ffmpeg_error.reason}"
        ) from decord_error
    indices = np.asarray(choose(reader), np.int64)
  try:
    read(reader, indices)
    return reader, indices
  except TruncatedVideoError as error:
    if not allow_truncated or error.frames_read < 1:
      raise
    reader = reader.first(error.frames_read)
    indices = np.asarray(choose(reader), np.int64)
    read(reader, indices)
    return reader, indices


def _checked_unique(reader, indices, name: str) -> tuple[np.ndarray, np.ndarray]:
  """(sorted distinct indices, inverse); IndexError naming the file for one outside the video."""
  indices = np.asarray(indices, dtype=np.int64).reshape(-1)
  num_frames = len(reader)
  bad = indices[(indices < 0) | (indices >= num_frames)]
  if bad.size:
    raise IndexError(
        f"{name}: frame indices {bad.tolist()[:5]} outside the video's {num_frames} frames"
    )
  # Decode each distinct frame once, in file order (cheapest seeking).
  return np.unique(indices, return_inverse=True)


def read_from_reader(reader, indices, name: str) -> np.ndarray:
  """`read_frames` on an open reader (reads of one file may share it); `name` is for errors."""
  unique, inverse = _checked_unique(reader, indices, name)
  if isinstance(reader, FfmpegReader):
    return reader.get_batch(unique)[inverse]
  return _read_decord(reader, unique, name)[inverse]


def stream_from_reader(reader, indices, name: str, on_chunk: ChunkSink) -> None:
  """The distinct frames of `indices`, in file order, handed to `on_chunk` as they are decoded:
  `DEFAULT_CHUNK_FRAMES` at a time (decord seeks to each chunk; the bundled ffmpeg decodes the
  stream once, its frames read from its pipe a chunk at a time)."""
  unique, _ = _checked_unique(reader, indices, name)
  if not unique.size:
    return
  if isinstance(reader, FfmpegReader):
    for chunk, frames in reader.iter_batches(unique, DEFAULT_CHUNK_FRAMES):
      on_chunk(chunk, frames)
    return
  for chunk in np.split(unique, range(DEFAULT_CHUNK_FRAMES, len(unique), DEFAULT_CHUNK_FRAMES)):
    on_chunk(chunk, _read_decord(reader, chunk, name))


def _read_decord(reader, unique: np.ndarray, name: str) -> np.ndarray:
  """uint8 [U, H, W, 3]: the sorted distinct frames `unique` of a decord reader."""
  try:
    return reader.get_batch(unique.tolist()).asnumpy()
  except Exception as error:
    if "DECORDArrayCopyFromTo" not in str(error):
      raise VideoDecodeError(f"{name}: {_decode_failure_reason(error)}") from error
    return np.stack([_read_one_padded(reader, int(index), name) for index in unique])


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

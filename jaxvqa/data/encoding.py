"""The ffmpeg steps of make-dataset: a source's mezzanine, one encode, its VMAF.

`jaxvqa.data.compress` runs these for every (source, rung, codec); each step here is one ffmpeg
job on local files and knows nothing about the others.

Decisions:
- The mezzanine is lossless x264 (`-qp 0`) yuv420p 8-bit in Matroska, after the
  optional `--scale` (lanczos) and `--max-frames`, with rotation applied and
  audio dropped; odd sizes are cropped by one pixel to even. Encodes are made
  FROM the mezzanine and VMAF compares each encode TO the mezzanine, so both
  sides of VMAF see the same frames, size and pixel format, and the reference
  is bit-exact to what the encoder saw (qp 0 is lossless), at a fraction of
  raw y4m's size.
- Frame rate, any source (23.976, 26.78 in a 1/1000 time base, variable): every
  decoded source frame becomes exactly one mezzanine frame (nothing dropped or
  repeated), re-timed to constant frame rate: pts = n / R (`settb` + `setpts=N`,
  then `-fps_mode cfr -r R`, which then has nothing to drop or duplicate). R is
  the source's average rate, a rational measured from its packet timestamps
  ((packets − 1) / span); it is snapped to a broadcast rate (24000/1001, 24,
  25, 30000/1001, ...) when within 0.1 % of it or when every timestamp is that
  rate's rounded to the time base (a millisecond time base makes eight frames
  of 29.97 look like 29.915), else rounded to 1/1000 Hz. A variable-rate source thus plays at its
  mean rate: its frames, not its timing, are what the encoders and VMAF see.
  R is kept in the mezzanine's sidecar (as "fps_rational") and every later step
  re-times the frames it decodes the same way (encodes: `setpts=N` on the
  mezzanine's frames; VMAF: `setpts=N` on both inputs), so frame n of an
  encode is always compared with frame n of the mezzanine whatever time base a
  container rounds to. Each encode's packet count must equal the mezzanine's
  frame count, and so must the number of frames VMAF scored.
- Lower rungs of a resolution ladder: the mezzanine is downscaled with lanczos to the coded size
  (`ladder.coded_size`), then encoded. For VMAF the decoded encode is upscaled back to the
  display size (the mezzanine's) with bicubic, as players do, kept in yuv420p, and compared with
  the mezzanine. Scale 1 encodes have no scaler anywhere.
- Rate control is two-pass VBR at the target (`-b:v`) for x264, x265 and VP9,
  as bitrate ladders are usually made: one-pass ABR misses by 2-3x on the
  short clips of the demo (it has no time to converge). ffmpeg's libsvtav1
  offers no two-pass entry point, so AV1 is one-pass VBR. Targets are still
  missed on tiny or static clips (an encoder cannot spend bits a picture does
  not need), which is why the achieved bitrate is recorded; the label is
  VMAF, the rung only groups encodes.
- Achieved bitrate = the sum of the video packets' sizes (ffmpeg `framecrc` over
  a stream copy, container overhead excluded) × 8 / (frames / fps).
- VMAF: libvmaf's built-in default model (vmaf_v0.6.1), `log_fmt=json`; the
  per-frame list is its frame scores, `vmaf` their arithmetic mean (libvmaf's
  "mean" pooling).
- Encoders always run single-threaded (`ENCODER_THREADS`): x264/x265 output depends on their
  thread count, and one thread makes every encode (and so every label) the same on any machine,
  after any resume and under any scheduler (thread pool or Beam). Decoding, the lossless
  mezzanine and libvmaf (whose results do not depend on threads) take a `threads` argument.
- Outputs are written under a temporary name (`partial_path`) and renamed when complete.
- A source without a video stream (audio only) fails as "no video stream".
"""

from __future__ import annotations

import dataclasses
import fractions
import json
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from jaxvqa.data import ffmpeg

DOWNSCALER = "lanczos"  # mezzanine → coded size, before encoding
UPSCALER = "bicubic"  # decoded encode → display size, for VMAF and read_display_frames
# Rates that millisecond time bases blur (23.976 is stored as 41/42 ms steps).
BROADCAST_RATES = tuple(
    fractions.Fraction(rate)
    for rate in (
        "24000/1001",
        "24",
        "25",
        "30000/1001",
        "30",
        "48",
        "50",
        "60000/1001",
        "60",
        "100",
        "120000/1001",
        "120",
    )
)


@dataclasses.dataclass(frozen=True)
class CodecSettings:
  """How one encoder is driven at a target bitrate."""

  container: str  # ffmpeg muxer name
  extension: str
  options: tuple[str, ...]  # after `-c:v <codec> -b:v <rate>`
  # (threads, pass number or None for single pass) → threading and pass arguments.
  # Pass statistics go to files relative to the encode's private working dir.
  run_options: Callable[[int, int | None], tuple[str, ...]]
  two_pass: bool


def _ffmpeg_pass_options(threads: int, pass_number: int | None) -> tuple[str, ...]:
  passes = ("-pass", str(pass_number), "-passlogfile", "passlog") if pass_number else ()
  return ("-threads", str(threads), *passes)


def _x265_options(threads: int, pass_number: int | None) -> tuple[str, ...]:
  # ffmpeg's libx265 takes passes only through -x265-params.
  passes = f":pass={pass_number}:stats=x265.log" if pass_number else ""
  return ("-x265-params", f"log-level=error:pools={threads}{passes}")


def _svtav1_options(threads: int, pass_number: int | None) -> tuple[str, ...]:
  del pass_number  # ffmpeg's libsvtav1 has no two-pass entry point: one-pass VBR
  return ("-svtav1-params", f"lp={threads}")


CODECS: dict[str, CodecSettings] = {
    "libx264": CodecSettings(
        "mp4", ".mp4", ("-preset", "medium"), _ffmpeg_pass_options, two_pass=True
    ),
    "libx265": CodecSettings(
        "mp4", ".mp4", ("-preset", "medium", "-tag:v", "hvc1"), _x265_options, two_pass=True
    ),
    "libsvtav1": CodecSettings("mp4", ".mp4", ("-preset", "8"), _svtav1_options, two_pass=False),
    "libvpx-vp9": CodecSettings(
        "webm",
        ".webm",
        ("-deadline", "good", "-cpu-used", "4", "-row-mt", "1"),
        _ffmpeg_pass_options,
        two_pass=True,
    ),
}
ENCODER_THREADS = 1  # see the module docstring: thread count changes x264/x265 output


def parse_codecs(text: str) -> list[str]:
  """'libx264,libx265' → ['libx264', 'libx265']; a name not in `CODECS` is an error."""
  codecs = [item.strip() for item in text.split(",") if item.strip()]
  unknown = [codec for codec in codecs if codec not in CODECS]
  if unknown or not codecs:
    raise ValueError(f"unknown codec {unknown or text!r}; choose from {sorted(CODECS)}")
  return codecs


class EncodeCheckError(RuntimeError):
  """A step ran but its result is unusable (empty source, frames lost)."""


@dataclasses.dataclass(frozen=True)
class Mezzanine:
  source_id: str
  original: Path  # the user's source file
  path: Path  # absolute path of the mezzanine
  width: int
  height: int
  num_frames: int
  fps: float
  fps_rational: str = ""  # "num/den", the exact constant rate of the mezzanine

  @property
  def rate(self) -> fractions.Fraction:
    return (
        fractions.Fraction(self.fps_rational)
        if self.fps_rational
        else (fractions.Fraction(self.fps).limit_denominator(1001))
    )


def partial_path(final: Path) -> Path:
  """A temporary name beside `final` that no reader mistakes for a finished file."""
  return final.with_name(f".{final.stem}.partial{final.suffix}")


def _framecrc_rows(path: Path, *, copy: bool, threads: int = 1) -> tuple[str, list[list[int]]]:
  """ffmpeg's framecrc of the first video stream: header text and [dts, pts, duration, size].

  `copy` reads packets (no decoding); otherwise every decoded frame, passed
  through without ffmpeg dropping or duplicating any (its default for framecrc
  drops frames whose timestamps collide, which undercounts variable-rate files).
  """
  mode = ["-c", "copy"] if copy else ["-fps_mode", "passthrough"]
  try:
    completed = ffmpeg.run_ffmpeg(
        [
            "-v",
            "error",
            "-threads",
            str(threads),
            "-i",
            path,
            "-map",
            "0:v:0",
            *mode,
            "-f",
            "framecrc",
            "-",
        ],
        capture_stdout=True,
    )
  except ffmpeg.FfmpegError as error:
    if "matches no streams" in error.stderr:  # the -map 0:v:0 above found no video
      raise EncodeCheckError(
          f"no video stream in {Path(path).name} (audio or data only): give a video file"
      ) from None
    raise
  text = completed.stdout.decode()
  rows = [
      [int(field) for field in line.split(",")[1:5]]
      for line in text.splitlines()
      if line and not line.startswith("#")
  ]
  return text, rows


def source_rate(path: Path) -> fractions.Fraction:
  """The constant rate a source's mezzanine gets (see the module docstring), from packets."""
  text, rows = _framecrc_rows(path, copy=True)
  time_base = re.search(r"#tb 0: (\d+)/(\d+)", text)
  if not rows or not time_base:
    raise EncodeCheckError(f"no video packets in {Path(path).name}")
  tb = fractions.Fraction(int(time_base.group(1)), int(time_base.group(2)))
  no_pts = -(2**63)  # AV_NOPTS_VALUE
  stamps = sorted(pts for _, pts, _, _ in rows if pts != no_pts) or sorted(
      dts for dts, _, _, _ in rows if dts != no_pts
  )
  if len(stamps) >= 2 and stamps[-1] > stamps[0]:
    rate = fractions.Fraction(len(stamps) - 1) / ((stamps[-1] - stamps[0]) * tb)
  elif rows[0][2] > 0:  # one frame: its duration
    rate = 1 / (rows[0][2] * tb)
  else:
    rate = fractions.Fraction(25)
  for broadcast in BROADCAST_RATES:
    if abs(rate / broadcast - 1) <= 0.001 or _rounded_from(stamps, tb, broadcast):
      return broadcast
  return fractions.Fraction(round(rate * 1000), 1000)


def _rounded_from(stamps: Sequence[int], tb: fractions.Fraction, rate: fractions.Fraction) -> bool:
  """Whether `stamps` (sorted, in units of `tb`) are frames at `rate` each rounded to
  the time base: within one tick of k / rate from the first (both ends rounded)."""
  if len(stamps) < 2 or 1 / rate < 2 * tb:
    return False
  return all(abs((stamp - stamps[0]) * tb - k / rate) <= tb for k, stamp in enumerate(stamps))


def stream_facts(path: Path, threads: int = 1) -> tuple[int, int, int, float]:
  """(width, height, frames, fps) of a file's first video stream, by decoding it.

  fps is frames / summed frame durations, so variable-rate streams get their mean.
  """
  text, rows = _framecrc_rows(path, copy=False, threads=threads)
  durations = [row[2] for row in rows]
  size = re.search(r"#dimensions 0: (\d+)x(\d+)", text)
  time_base = re.search(r"#tb 0: (\d+)/(\d+)", text)
  if not size or not time_base or not durations or sum(durations) <= 0:
    raise EncodeCheckError(f"no video frames decoded from {path}")
  seconds = sum(durations) * int(time_base.group(1)) / int(time_base.group(2))
  return int(size.group(1)), int(size.group(2)), len(durations), len(durations) / seconds


def _cfr_filter(rate: fractions.Fraction) -> str:
  """Frame n gets pts n / rate exactly: the frame count is what was decoded, whatever
  timestamps the input had (its container may round them to milliseconds)."""
  return f"settb=expr={rate.denominator}/{rate.numerator},setpts=N"


def _rate_text(rate: fractions.Fraction) -> str:
  return f"{rate.numerator}/{rate.denominator}"


def upscale_filter(width: int, height: int) -> str:
  """The decoded encode at display size, as VMAF compares it and a player shows it."""
  return f"scale={width}:{height}:flags={UPSCALER},format=yuv420p"


def make_mezzanine(
    original: Path,
    out_path: Path,
    *,
    scale: tuple[int, int] | None,
    max_frames: int | None,
    threads: int,
) -> Mezzanine:
  """Normalises a source to lossless x264 yuv420p at a constant rate (module docstring)."""
  if original.stat().st_size == 0:
    raise EncodeCheckError("empty file (0 bytes)")
  rate = source_rate(original)
  if scale:
    geometry = f"scale={scale[0]}:{scale[1]}:flags=lanczos,setsar=1"
  else:
    geometry = "crop=trunc(iw/2)*2:trunc(ih/2)*2"
  limit = ["-frames:v", str(max_frames)] if max_frames else []
  partial = partial_path(out_path)
  out_path.parent.mkdir(parents=True, exist_ok=True)
  # -xerror: a decode error (truncated, corrupt) fails the source instead of
  # silently making a shorter mezzanine. With pts = n / rate, cfr at that rate
  # has nothing to drop or repeat: one mezzanine frame per decoded frame.
  ffmpeg.run_ffmpeg(
      [
          "-v",
          "error",
          "-xerror",
          "-threads",
          str(threads),
          "-i",
          original,
          *ffmpeg.FIRST_VIDEO_STREAM_ONLY,
          "-vf",
          f"{geometry},format=yuv420p,{_cfr_filter(rate)}",
          *limit,
          "-fps_mode",
          "cfr",
          "-r",
          _rate_text(rate),
          *ffmpeg.LOSSLESS_X264,
          "-threads",
          str(threads),
          "-f",
          "matroska",
          partial,
      ]
  )
  os.replace(partial, out_path)
  width, height, frames, _ = stream_facts(out_path, threads)
  return Mezzanine(
      original.stem, original, out_path, width, height, frames, float(rate), _rate_text(rate)
  )


def packets(path: Path) -> tuple[int, int]:
  """(number, total bytes) of the video packets (stream copy, container overhead excluded)."""
  _, rows = _framecrc_rows(path, copy=True)
  return len(rows), sum(row[3] for row in rows)


def encode(
    mezzanine: Mezzanine,
    codec: str,
    kbps: float,
    out_path: Path,
    *,
    threads: int,
    size: tuple[int, int] | None = None,
    decode_threads: int = 1,
) -> None:
  """Encodes the mezzanine at `kbps` (two-pass where the codec allows) to `out_path`.

  `size`: the coded (width, height) when it is not the mezzanine's (lanczos downscale).
  """
  settings = CODECS[codec]
  partial = partial_path(out_path).absolute()
  out_path.parent.mkdir(parents=True, exist_ok=True)
  graph = _cfr_filter(mezzanine.rate)
  if size and size != (mezzanine.width, mezzanine.height):
    graph += f",scale={size[0]}:{size[1]}:flags={DOWNSCALER},format=yuv420p"
  common = [
      "-v",
      "error",
      "-threads",
      str(decode_threads),
      "-i",
      Path(mezzanine.path).absolute(),
      "-map",
      "0:v:0",
      "-an",
      "-vf",
      graph,
      "-fps_mode",
      "cfr",
      "-r",
      _rate_text(mezzanine.rate),
      "-c:v",
      codec,
      "-b:v",
      f"{kbps * 1000:.0f}",
      *settings.options,
      "-pix_fmt",
      "yuv420p",
  ]
  with tempfile.TemporaryDirectory(prefix="jaxvqa_encode_") as work_dir:
    if settings.two_pass:
      ffmpeg.run_ffmpeg(
          [*common, *settings.run_options(threads, 1), "-f", "null", "-"], cwd=work_dir
      )
    ffmpeg.run_ffmpeg(
        [
            *common,
            *settings.run_options(threads, 2 if settings.two_pass else None),
            "-f",
            settings.container,
            partial,
        ],
        cwd=work_dir,
    )
  os.replace(partial, out_path)


def measure_vmaf(
    distorted: Path, reference: Path, *, threads: int, display_size: tuple[int, int] | None = None
) -> list[float]:
  """Per-frame VMAF of `distorted` against `reference` (libvmaf default model).

  Frame n of one is compared with frame n of the other (both re-timed to pts = n).
  `display_size`: upscale `distorted` to this (width, height) first (bicubic, in
  yuv420p), for encodes made at a smaller size than the reference.
  """
  retime = "settb=expr=1/25,setpts=N"  # any common time base; only the order matters
  upscale = f",{upscale_filter(*display_size)}" if display_size else ""
  with tempfile.TemporaryDirectory(prefix="jaxvqa_vmaf_") as work_dir:
    # log_path is relative to cwd so the filter graph never escapes a user's path.
    graph = (
        f"[0:v]{retime}{upscale}[distorted];[1:v]{retime}[reference];"
        f"[distorted][reference]libvmaf=log_fmt=json:log_path=vmaf.json"
        f":n_threads={threads}"
    )
    ffmpeg.run_ffmpeg(
        [
            "-v",
            "error",
            "-threads",
            str(threads),
            "-i",
            Path(distorted).absolute(),
            "-threads",
            str(threads),
            "-i",
            Path(reference).absolute(),
            "-lavfi",
            graph,
            "-f",
            "null",
            "-",
        ],
        cwd=work_dir,
    )
    with open(os.path.join(work_dir, "vmaf.json")) as file:
      log = json.load(file)
  return [float(frame["metrics"]["vmaf"]) for frame in log["frames"]]

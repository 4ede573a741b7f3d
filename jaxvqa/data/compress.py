"""The paper's training data: each source along a streaming ladder, VMAF-labelled.

    sources/<id>.mkv                    mezzanine: the source normalised once
    encodes/<id>/<codec>_<kbps>k.<ext>  one encode per (codec, rung) at scale 1
    encodes/<id>/<codec>_<kbps>k_x<s>.<ext>   ... and at scale s < 1 (`--scales`)
    encodes/<id>/<name>.json            its finished record (sidecar)
    manifest.jsonl                      one JSON row per encode (see MANIFEST_KEYS)

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
- Resolution ladder (`--scales 1,0.75,0.5`): each (scale, bitrate, codec) is
  one encode. The mezzanine is downscaled with lanczos to the coded size
  (round(W·s), round(H·s)) rounded to even numbers (yuv420p needs them), at
  least 2×2, then encoded. For VMAF the decoded encode is upscaled back to the
  display size (the mezzanine's) with bicubic, as players do, kept in yuv420p,
  and compared with the mezzanine; `read_display_frames` makes exactly those
  frames (then rgb24) for a trainer. Scale 1 encodes have no scaler anywhere,
  and keep their old names and rows.
- rung = index of (scale, target kbps) in the ladder sorted by scale, then kbps
  (scales [0.5, 1] × kbps [100, 300]: 0.5@100 → 0, 0.5@300 → 1, 1@100 → 2,
  1@300 → 3). With `--scales 1` it is the bitrate's index, as before. Rows are
  sorted by (source, codec, rung).
- Manifest rows keep `width`, `height` = display size (the mezzanine's) and add
  `scale`, `encode_width`, `encode_height` (the coded size) and
  `bits_per_pixel` = achieved bitrate / (encode_width · encode_height · fps),
  i.e. on the CODED size: what the encoder had per coded pixel.
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
- Resumable: outputs are written under temporary names and renamed when
  complete; a sidecar JSON is written (atomically) only after VMAF succeeds,
  and carries the recipe that made it, so a re-run skips finished encodes and
  redoes any whose recipe changed. The manifest is rewritten atomically at the
  end from the sidecars.
- Parallel: one thread pool of `jobs` workers (default: every core), each
  driving one ffmpeg process (the GIL is free while ffmpeg runs). Mezzanines
  run in the pool too, and each source's encodes are queued as soon as its
  mezzanine is ready, so no step waits on another source. Encoders always run
  single-threaded: x264/x265 output depends on their thread count, and one
  thread makes every encode (and so every label) the same on any machine and
  after any resume; with more pending encodes than cores, one thread per
  process is also the fastest use of the cores. Decoding, the lossless
  mezzanine and libvmaf (whose results do not depend on threads) get
  cores // min(jobs, pending tasks) threads, so a small job still uses every
  core. The CLI ends with one line: sources, encodes made / skipped / failed,
  wall time and encodes per second.
- A source without a video stream (audio only) fails as "no video stream".
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import fractions
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from jaxvqa.data import ffmpeg
from jaxvqa.data import video

MANIFEST_NAME = "manifest.jsonl"
MANIFEST_KEYS = ("source", "source_path", "path", "codec", "rung", "target_kbps",
                 "bitrate_kbps", "vmaf", "vmaf_frames", "width", "height", "num_frames",
                 "fps", "scale", "encode_width", "encode_height", "bits_per_pixel")
DEFAULT_LADDER = "200k,500k,1M,2M,4M,8M"
DEFAULT_SCALES = "1"
VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".y4m", ".ts", ".mts", ".m2ts",
    ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ogv", ".mxf"})
MEZZANINE_SUFFIX = ".mkv"
RECIPE_VERSION = 2  # bump when encoder or VMAF settings change, so old sidecars are redone
DOWNSCALER = "lanczos"  # mezzanine → coded size, before encoding
UPSCALER = "bicubic"  # decoded encode → display size, for VMAF and read_display_frames
# Rates that millisecond time bases blur (23.976 is stored as 41/42 ms steps).
BROADCAST_RATES = tuple(fractions.Fraction(rate) for rate in (
    "24000/1001", "24", "25", "30000/1001", "30", "48", "50", "60000/1001", "60", "100",
    "120000/1001", "120"))


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
    "libx264": CodecSettings("mp4", ".mp4", ("-preset", "medium"), _ffmpeg_pass_options,
                             two_pass=True),
    "libx265": CodecSettings("mp4", ".mp4", ("-preset", "medium", "-tag:v", "hvc1"),
                             _x265_options, two_pass=True),
    "libsvtav1": CodecSettings("mp4", ".mp4", ("-preset", "8"), _svtav1_options,
                               two_pass=False),
    "libvpx-vp9": CodecSettings("webm", ".webm",
                                ("-deadline", "good", "-cpu-used", "4", "-row-mt", "1"),
                                _ffmpeg_pass_options, two_pass=True),
}
ENCODER_THREADS = 1  # see the module docstring: thread count changes x264/x265 output


class EncodeCheckError(RuntimeError):
  """A step ran but its result is unusable (empty source, frames lost)."""


@dataclasses.dataclass(frozen=True)
class Failure:
  """Something that could not be made: `name` is the source file or encode."""
  name: str
  reason: str


@dataclasses.dataclass
class MakeDatasetResult:
  rows: list[dict]  # manifest rows, sorted by (source, codec, rung)
  failures: list[Failure]
  num_sources: int = 0  # source files given
  made: int = 0  # encodes made by this run
  skipped: int = 0  # encodes an earlier run had finished (sidecar and file present)
  failed_encodes: int = 0  # encodes that failed (their sources' mezzanines were made)
  failed_sources: int = 0  # sources whose mezzanine could not be made (no encodes tried)
  seconds: float = 0.0  # wall time of the whole job

  def summary(self) -> str:
    """One line: sources, encodes made / skipped / failed, wall time, encodes per second."""
    rate = self.made / self.seconds if self.seconds > 0 else 0.0
    return (f"{self.num_sources} sources ({self.failed_sources} failed), encodes: "
            f"{self.made} made, {self.skipped} skipped (already done), {self.failed_encodes} "
            f"failed; {self.seconds:.2f} s wall, {rate:.2f} encodes/s")


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
    return fractions.Fraction(self.fps_rational) if self.fps_rational else (
        fractions.Fraction(self.fps).limit_denominator(1001))


@dataclasses.dataclass(frozen=True)
class Rung:
  """One step of the ladder: a target bitrate at a resolution scale."""
  index: int  # position in the ladder sorted by (scale, kbps)
  scale: float
  kbps: float


# ----------------------------------------------------------------------------- parsing


def parse_bitrate_kbps(text: str) -> float:
  """'200k' → 200, '1.5M' → 1500, '8000' → 8000 (plain numbers are kb/s)."""
  match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kKmM]?)\s*", text)
  if not match:
    raise ValueError(f"bad bitrate {text!r}: use a number of kb/s with an optional "
                     "k or M suffix, e.g. 200k, 1.5M, 8000")
  value = float(match.group(1)) * (1000.0 if match.group(2) in ("m", "M") else 1.0)
  if value <= 0:
    raise ValueError(f"bad bitrate {text!r}: must be positive")
  return value


def parse_ladder(text: str) -> list[float]:
  """'200k,500k,1M' → [200.0, 500.0, 1000.0] in kb/s, sorted; duplicates are an error."""
  items = [item for item in text.split(",") if item.strip()]
  if not items:
    raise ValueError(f"bad ladder {text!r}: give comma-separated bitrates, e.g. "
                     f"{DEFAULT_LADDER}")
  ladder = sorted(parse_bitrate_kbps(item) for item in items)
  repeated = sorted({k for k in ladder if ladder.count(k) > 1})
  if repeated:
    raise ValueError(f"bad ladder {text!r}: rung {repeated[0]:g}k appears twice")
  return ladder


def parse_codecs(text: str) -> list[str]:
  codecs = [item.strip() for item in text.split(",") if item.strip()]
  unknown = [codec for codec in codecs if codec not in CODECS]
  if unknown or not codecs:
    raise ValueError(f"unknown codec {unknown or text!r}; choose from {sorted(CODECS)}")
  return codecs


def parse_scale(text: str) -> tuple[int, int]:
  match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
  if not match or int(match.group(1)) % 2 or int(match.group(2)) % 2:
    raise ValueError(f"bad scale {text!r}: use WIDTHxHEIGHT with even numbers, e.g. 640x360")
  return int(match.group(1)), int(match.group(2))


def parse_scales(text: str) -> list[float]:
  """'1,0.75,0.5' → [0.5, 0.75, 1.0]: resolution factors in (0, 1], sorted, distinct."""
  items = [item.strip() for item in text.split(",") if item.strip()]
  if not items:
    raise ValueError(f"bad scales {text!r}: give comma-separated factors, e.g. 1,0.75,0.5")
  scales = []
  for item in items:
    try:
      value = float(item)
    except ValueError:
      raise ValueError(f"bad scale {item!r} in --scales {text!r}: use numbers in (0, 1], "
                       "e.g. 1,0.75,0.5") from None
    if not 0 < value <= 1:
      raise ValueError(f"bad scale {item!r} in --scales {text!r}: must be in (0, 1] "
                       "(1 = the mezzanine's size)")
    scales.append(value)
  if len(set(scales)) != len(scales):
    raise ValueError(f"bad scales {text!r}: a factor appears twice")
  return sorted(scales)


def make_ladder(ladder_kbps: Sequence[float], scales: Sequence[float] = (1.0,)
                ) -> list[Rung]:
  """Every (scale, kbps), numbered in (scale, kbps) order: rung = its index."""
  pairs = sorted((float(scale), float(kbps)) for scale in scales for kbps in ladder_kbps)
  return [Rung(index, scale, kbps) for index, (scale, kbps) in enumerate(pairs)]


def coded_size(width: int, height: int, scale: float) -> tuple[int, int]:
  """The encode's size at `scale` of a (width, height) display: even, at least 2×2."""
  if scale == 1:
    return width, height
  def even(length: int) -> int:  # nearest even number, halves up (21 → 22)
    return max(2, 2 * math.floor(length * scale / 2 + 0.5))
  return even(width), even(height)


def kbps_label(kbps: float) -> str:
  """File-name form of a rate: 200 → '200k', 12.5 → '12.5k'."""
  return f"{kbps:g}k"


def encode_name(codec: str, kbps: float, scale: float = 1.0) -> str:
  """'libx264_200k' at scale 1 (the names before --scales existed), else 'libx264_200k_x0.5'."""
  return f"{codec}_{kbps_label(kbps)}" + ("" if scale == 1 else f"_x{scale:g}")


# ----------------------------------------------------------------------------- files


def write_atomically(path: Path, text: str) -> None:
  """Writes `text` to a temporary file beside `path`, then renames it over `path`."""
  path.parent.mkdir(parents=True, exist_ok=True)
  descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                           dir=path.parent)
  try:
    with os.fdopen(descriptor, "w") as file:
      file.write(text)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)
  finally:
    if os.path.exists(temporary):
      os.remove(temporary)


def _partial_path(final: Path) -> Path:
  """A temporary name beside `final` that no reader mistakes for a finished file."""
  return final.with_name(f".{final.stem}.partial{final.suffix}")


def remove_stale_temporaries(out_dir: Path) -> None:
  """Deletes what a killed run leaves: `.<name>.partial.<ext>` and `.<name>.<random>.tmp`."""
  for pattern in (".*.partial.*", ".*.tmp"):
    for path in out_dir.glob(pattern):
      path.unlink(missing_ok=True)
    for path in out_dir.glob(f"*/{pattern}"):
      path.unlink(missing_ok=True)
    for path in out_dir.glob(f"encodes/*/{pattern}"):
      path.unlink(missing_ok=True)


def find_sources(directory: str | os.PathLike) -> tuple[list[Path], list[Path]]:
  """Video files (by extension) directly in `directory`; and the other files skipped."""
  directory = Path(directory)
  if not directory.is_dir():
    raise FileNotFoundError(f"--sources {directory}: not a directory")
  files = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
  videos = [p for p in files if p.suffix.lower() in VIDEO_EXTENSIONS]
  return videos, [p for p in files if p not in videos]


# ----------------------------------------------------------------------------- ffmpeg steps


def _framecrc_rows(path: Path, *, copy: bool, threads: int = 1) -> tuple[str, list[list[int]]]:
  """ffmpeg's framecrc of the first video stream: header text and [dts, pts, duration, size].

  `copy` reads packets (no decoding); otherwise every decoded frame, passed
  through without ffmpeg dropping or duplicating any (its default for framecrc
  drops frames whose timestamps collide, which undercounts variable-rate files).
  """
  mode = ["-c", "copy"] if copy else ["-fps_mode", "passthrough"]
  try:
    completed = ffmpeg.run_ffmpeg(["-v", "error", "-threads", str(threads), "-i", path,
                                   "-map", "0:v:0", *mode, "-f", "framecrc", "-"],
                                  capture_stdout=True)
  except ffmpeg.FfmpegError as error:
    if "matches no streams" in error.stderr:  # the -map 0:v:0 above found no video
      raise EncodeCheckError(
          f"no video stream in {Path(path).name} (audio or data only): give a video file") \
          from None
    raise
  text = completed.stdout.decode()
  rows = [[int(field) for field in line.split(",")[1:5]] for line in text.splitlines()
          if line and not line.startswith("#")]
  return text, rows


def source_rate(path: Path) -> fractions.Fraction:
  """The constant rate a source's mezzanine gets (see the module docstring), from packets."""
  text, rows = _framecrc_rows(path, copy=True)
  time_base = re.search(r"#tb 0: (\d+)/(\d+)", text)
  if not rows or not time_base:
    raise EncodeCheckError(f"no video packets in {Path(path).name}")
  tb = fractions.Fraction(int(time_base.group(1)), int(time_base.group(2)))
  no_pts = -(2 ** 63)  # AV_NOPTS_VALUE
  stamps = sorted(pts for _, pts, _, _ in rows if pts != no_pts) or sorted(
      dts for dts, _, _, _ in rows if dts != no_pts)
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


def _rounded_from(stamps: Sequence[int], tb: fractions.Fraction,
                  rate: fractions.Fraction) -> bool:
  """Whether `stamps` (sorted, in units of `tb`) are frames at `rate` each rounded to
  the time base: within one tick of k / rate from the first (both ends rounded)."""
  if len(stamps) < 2 or 1 / rate < 2 * tb:
    return False
  return all(abs((stamp - stamps[0]) * tb - k / rate) <= tb
             for k, stamp in enumerate(stamps))


def _stream_facts(path: Path, threads: int = 1) -> tuple[int, int, int, float]:
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


def _upscale_filter(width: int, height: int) -> str:
  """The decoded encode at display size, as VMAF compares it and a player shows it."""
  return f"scale={width}:{height}:flags={UPSCALER},format=yuv420p"


def make_mezzanine(original: Path, out_path: Path, *, scale: tuple[int, int] | None,
                   max_frames: int | None, threads: int) -> Mezzanine:
  """Normalises a source to lossless x264 yuv420p at a constant rate (module docstring)."""
  if original.stat().st_size == 0:
    raise EncodeCheckError("empty file (0 bytes)")
  rate = source_rate(original)
  if scale:
    geometry = f"scale={scale[0]}:{scale[1]}:flags=lanczos,setsar=1"
  else:
    geometry = "crop=trunc(iw/2)*2:trunc(ih/2)*2"
  limit = ["-frames:v", str(max_frames)] if max_frames else []
  partial = _partial_path(out_path)
  out_path.parent.mkdir(parents=True, exist_ok=True)
  # -xerror: a decode error (truncated, corrupt) fails the source instead of
  # silently making a shorter mezzanine. With pts = n / rate, cfr at that rate
  # has nothing to drop or repeat: one mezzanine frame per decoded frame.
  ffmpeg.run_ffmpeg([
      "-v", "error", "-xerror", "-threads", str(threads), "-i", original,
      "-map", "0:v:0", "-an", "-sn", "-dn",
      "-vf", f"{geometry},format=yuv420p,{_cfr_filter(rate)}", *limit,
      "-fps_mode", "cfr", "-r", _rate_text(rate),
      "-c:v", "libx264", "-qp", "0", "-preset", "veryfast", "-threads", str(threads),
      "-f", "matroska", partial])
  os.replace(partial, out_path)
  width, height, frames, _ = _stream_facts(out_path, threads)
  return Mezzanine(original.stem, original, out_path, width, height, frames, float(rate),
                   _rate_text(rate))


def _packets(path: Path) -> tuple[int, int]:
  """(number, total bytes) of the video packets (stream copy, container overhead excluded)."""
  _, rows = _framecrc_rows(path, copy=True)
  return len(rows), sum(row[3] for row in rows)


def encode(mezzanine: Mezzanine, codec: str, kbps: float, out_path: Path, *,
           threads: int, size: tuple[int, int] | None = None,
           decode_threads: int = 1) -> None:
  """Encodes the mezzanine at `kbps` (two-pass where the codec allows) to `out_path`.

  `size`: the coded (width, height) when it is not the mezzanine's (lanczos downscale).
  """
  settings = CODECS[codec]
  partial = _partial_path(out_path).absolute()
  out_path.parent.mkdir(parents=True, exist_ok=True)
  graph = _cfr_filter(mezzanine.rate)
  if size and size != (mezzanine.width, mezzanine.height):
    graph += f",scale={size[0]}:{size[1]}:flags={DOWNSCALER},format=yuv420p"
  common = ["-v", "error", "-threads", str(decode_threads),
            "-i", Path(mezzanine.path).absolute(), "-map", "0:v:0", "-an",
            "-vf", graph, "-fps_mode", "cfr", "-r", _rate_text(mezzanine.rate),
            "-c:v", codec, "-b:v", f"{kbps * 1000:.0f}", *settings.options,
            "-pix_fmt", "yuv420p"]
  with tempfile.TemporaryDirectory(prefix="jaxvqa_encode_") as work_dir:
    if settings.two_pass:
      ffmpeg.run_ffmpeg([*common, *settings.run_options(threads, 1), "-f", "null", "-"],
                        cwd=work_dir)
    ffmpeg.run_ffmpeg([*common, *settings.run_options(threads, 2 if settings.two_pass
                                                      else None),
                       "-f", settings.container, partial], cwd=work_dir)
  os.replace(partial, out_path)


def measure_vmaf(distorted: Path, reference: Path, *, threads: int,
                 display_size: tuple[int, int] | None = None) -> list[float]:
  """Per-frame VMAF of `distorted` against `reference` (libvmaf default model).

  Frame n of one is compared with frame n of the other (both re-timed to pts = n).
  `display_size`: upscale `distorted` to this (width, height) first (bicubic, in
  yuv420p), for encodes made at a smaller size than the reference.
  """
  retime = "settb=expr=1/25,setpts=N"  # any common time base; only the order matters
  upscale = f",{_upscale_filter(*display_size)}" if display_size else ""
  with tempfile.TemporaryDirectory(prefix="jaxvqa_vmaf_") as work_dir:
    # log_path is relative to cwd so the filter graph never escapes a user's path.
    graph = (f"[0:v]{retime}{upscale}[distorted];[1:v]{retime}[reference];"
             f"[distorted][reference]libvmaf=log_fmt=json:log_path=vmaf.json"
             f":n_threads={threads}")
    ffmpeg.run_ffmpeg(["-v", "error", "-threads", str(threads),
                       "-i", Path(distorted).absolute(), "-threads", str(threads),
                       "-i", Path(reference).absolute(), "-lavfi", graph, "-f", "null", "-"],
                      cwd=work_dir)
    with open(os.path.join(work_dir, "vmaf.json")) as file:
      log = json.load(file)
  return [float(frame["metrics"]["vmaf"]) for frame in log["frames"]]


def bits_per_pixel(row: dict) -> float:
  """Achieved bits per coded pixel of a manifest row: a lower rung counts the size it was encoded
  at (`encode_width` × `encode_height`); rows made before `--scales` have the display size only."""
  width = row.get("encode_width", row["width"])
  height = row.get("encode_height", row["height"])
  return float(row["bitrate_kbps"]) * 1000.0 / (float(width) * float(height) * float(row["fps"]))


def read_display_frames(row: dict, dataset_dir: str | os.PathLike,
                        frame_indices: Sequence[int] | None = None) -> np.ndarray:
  """The frames of a manifest row's encode as VMAF judged them: uint8 [N, H, W, 3] rgb24.

  Decodes `dataset_dir/row["path"]` and, for an encode made below the display
  size, upscales it to (row["width"], row["height"]) with the very filter VMAF's
  comparison used (bicubic, in yuv420p), then converts to rgb24 as a plain
  ffmpeg decode does. Scale-1 encodes are a plain decode.

  Args:
    row: a manifest row (needs path, width, height, encode_width, encode_height).
    dataset_dir: the make-dataset output directory the row's path is relative to.
    frame_indices: display-order frame numbers (repeats and any order allowed);
      None for all frames.
  Returns:
    uint8 [N, height, width, 3].
  """
  path = Path(dataset_dir) / row["path"]
  if not path.is_file():
    raise FileNotFoundError(f"{path}: the encode named by manifest row path={row['path']!r} "
                            f"is missing; re-run make-dataset on {dataset_dir}")
  width, height = int(row["width"]), int(row["height"])
  filters = []
  unique = None
  if frame_indices is not None:
    unique = sorted({int(i) for i in frame_indices})
    beyond = [i for i in unique if i < 0 or i >= int(row.get("num_frames", sys.maxsize))]
    if beyond:
      raise IndexError(f"frame_indices {beyond[:5]} are outside {row['path']}, which has "
                       f"{row.get('num_frames', '?')} frames (0-based)")
    if not unique:
      return np.zeros((0, height, width, 3), np.uint8)
    filters.append("select='" + "+".join(f"eq(n\\,{i})" for i in unique) + "'")
  if (int(row.get("encode_width", width)), int(row.get("encode_height", height))) != (
      width, height):
    filters.append(_upscale_filter(width, height))
  completed = ffmpeg.run_ffmpeg(
      ["-v", "error", "-i", path, "-map", "0:v:0", *(["-vf", ",".join(filters)] if filters
                                                     else []),
       "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
      capture_stdout=True)
  frames = np.frombuffer(completed.stdout, np.uint8).reshape(-1, height, width, 3)
  if unique is None:
    return frames
  if len(frames) != len(unique):
    raise IndexError(f"{path}: {len(unique)} frames requested, {len(frames)} decoded: "
                     f"frame_indices run past the end of the encode")
  position = {index: k for k, index in enumerate(unique)}
  return frames[[position[int(i)] for i in frame_indices]]


# ----------------------------------------------------------------------------- the job


def _recipe(mezzanine_recipe: dict, codec: str, rung: Rung) -> dict:
  settings = CODECS[codec]
  recipe = {"version": RECIPE_VERSION, "mezzanine": mezzanine_recipe, "codec": codec,
            "target_kbps": rung.kbps, "options": list(settings.options),
            "two_pass": settings.two_pass, "rung": rung.index}
  if rung.scale != 1:
    recipe.update(scale=rung.scale, downscaler=DOWNSCALER, upscaler=UPSCALER)
  return recipe


def _load_sidecar(path: Path, recipe: dict) -> dict | None:
  """The finished row recorded in `path`, or None when absent, unreadable or stale."""
  try:
    with open(path) as file:
      record = json.load(file)
  except (OSError, ValueError):
    return None
  if record.get("recipe") != recipe or set(record.get("row", {})) != set(MANIFEST_KEYS):
    return None
  return record["row"]


def _encode_path(out_dir: Path, mezzanine: Mezzanine, codec: str, rung: Rung) -> Path:
  return out_dir / "encodes" / mezzanine.source_id / (
      encode_name(codec, rung.kbps, rung.scale) + CODECS[codec].extension)


def _make_encode(mezzanine: Mezzanine, out_dir: Path, codec: str, rung: Rung,
                 recipe: dict, threads: int) -> dict:
  encode_path = _encode_path(out_dir, mezzanine, codec, rung)
  width, height = coded_size(mezzanine.width, mezzanine.height, rung.scale)
  encode(mezzanine, codec, rung.kbps, encode_path, threads=ENCODER_THREADS,
         size=(width, height), decode_threads=threads)
  num_packets, packet_bytes = _packets(encode_path)
  if num_packets != mezzanine.num_frames:
    raise EncodeCheckError(f"the encode has {num_packets} frames, the mezzanine "
                           f"{mezzanine.num_frames}: the encoder dropped or added frames")
  display = (mezzanine.width, mezzanine.height)
  vmaf_frames = measure_vmaf(encode_path, mezzanine.path, threads=threads,
                             display_size=display if (width, height) != display else None)
  if len(vmaf_frames) != mezzanine.num_frames:
    raise EncodeCheckError(f"VMAF scored {len(vmaf_frames)} frames, the source has "
                           f"{mezzanine.num_frames}: the encoder dropped or added frames")
  duration = mezzanine.num_frames / mezzanine.fps
  bitrate_kbps = packet_bytes * 8 / duration / 1000
  row = {
      "source": mezzanine.source_id,
      "source_path": mezzanine.path.relative_to(out_dir).as_posix(),
      "path": encode_path.relative_to(out_dir).as_posix(),
      "codec": codec,
      "rung": rung.index,
      "target_kbps": float(rung.kbps),
      "bitrate_kbps": bitrate_kbps,
      "vmaf": sum(vmaf_frames) / len(vmaf_frames),
      "vmaf_frames": vmaf_frames,
      "width": mezzanine.width,
      "height": mezzanine.height,
      "num_frames": mezzanine.num_frames,
      "fps": mezzanine.fps,
      "scale": float(rung.scale),
      "encode_width": width,
      "encode_height": height,
  }
  row["bits_per_pixel"] = bits_per_pixel(row)
  write_atomically(encode_path.with_suffix(".json"),
                   json.dumps({"recipe": recipe, "row": row}))
  return row


def _mezzanine_path(original: Path, out_dir: Path) -> Path:
  return out_dir / "sources" / (original.stem + MEZZANINE_SUFFIX)


def _reuse_mezzanine(original: Path, out_dir: Path, recipe: dict) -> Mezzanine | None:
  """The source's mezzanine when its sidecar says it was made by `recipe`, else None."""
  path = _mezzanine_path(original, out_dir)
  try:
    with open(path.with_suffix(".json")) as file:
      record = json.load(file)
    if record["recipe"] == recipe and path.is_file():
      return Mezzanine(original.stem, original, path, record["width"], record["height"],
                       record["num_frames"], record["fps"], record["fps_rational"])
  except (OSError, ValueError, KeyError):
    pass
  return None


def _prepare_mezzanine(original: Path, out_dir: Path, recipe: dict, threads: int
                       ) -> Mezzanine:
  """The source's mezzanine, reused when its sidecar says it was made by `recipe`."""
  reused = _reuse_mezzanine(original, out_dir, recipe)
  if reused is not None:
    return reused
  path = _mezzanine_path(original, out_dir)
  mezzanine = make_mezzanine(original, path, scale=recipe["scale"],
                             max_frames=recipe["max_frames"], threads=threads)
  write_atomically(path.with_suffix(".json"), json.dumps({
      "recipe": recipe, "width": mezzanine.width, "height": mezzanine.height,
      "num_frames": mezzanine.num_frames, "fps": mezzanine.fps,
      "fps_rational": mezzanine.fps_rational}))
  return mezzanine


def _mezzanine_recipe(original: Path, scale, max_frames) -> dict:
  stat = original.stat()
  return {"version": RECIPE_VERSION, "original": original.name, "bytes": stat.st_size,
          "mtime_ns": stat.st_mtime_ns, "scale": list(scale) if scale else None,
          "max_frames": max_frames}


def _failure_reason(error: Exception) -> str:
  if isinstance(error, ffmpeg.FfmpegError):
    return error.reason
  if isinstance(error, EncodeCheckError):
    return str(error)
  return f"{type(error).__name__}: {error}"


def _source_failure_reason(original: Path, error: Exception) -> str:
  reason = _failure_reason(error)
  if "Error opening input" in reason or "Invalid data" in reason:
    hint = video.unopenable_reason(video.read_header(original))
    return f"{hint} (ffmpeg: {reason})" if hint else f"not a video (ffmpeg: {reason})"
  return reason


def _progress(total: int, description: str, enabled: bool):
  from tqdm import tqdm
  return tqdm(total=total, desc=description, unit="encode", file=sys.stderr,
              disable=not enabled, dynamic_ncols=True)


def make_dataset(sources: str | os.PathLike | Iterable[str | os.PathLike],
                 out_dir: str | os.PathLike, ladder_kbps: Sequence[float],
                 codecs: Sequence[str] = ("libx264",), jobs: int | None = None, *,
                 max_frames: int | None = None, scale: tuple[int, int] | None = None,
                 scales: Sequence[float] = (1.0,), progress: bool = True
                 ) -> MakeDatasetResult:
  """Encodes every source at every (scale, bitrate) and codec and VMAF-labels each encode.

  Args:
    sources: a directory (its video files, by extension) or a list of files.
    out_dir: output root (layout in the module docstring); created if needed.
    ladder_kbps: target bitrates in kb/s.
    codecs: encoder names, keys of `CODECS`.
    jobs: parallel ffmpeg processes (default: all cores).
    max_frames: cut each source to its first N frames.
    scale: (width, height) of the mezzanines, even numbers.
    scales: resolution factors in (0, 1] of the ladder (1 = the mezzanine's
      size); rung = index in the ladder sorted by (scale, kbps).
    progress: show a tqdm bar on stderr.
  Returns:
    the manifest rows (also written to out_dir/manifest.jsonl), the failures
    (each named; everything else is still made) and the counts and wall time.
  """
  started = time.monotonic()
  out_dir = Path(out_dir).absolute()
  ladder_kbps = [float(k) for k in ladder_kbps]
  if (not ladder_kbps or len(set(ladder_kbps)) != len(ladder_kbps)
      or min(ladder_kbps) <= 0):
    raise ValueError(f"ladder_kbps must be distinct positive rates, got {ladder_kbps}")
  scales = [float(s) for s in scales]
  if not scales or len(set(scales)) != len(scales) or not all(0 < s <= 1 for s in scales):
    raise ValueError(f"scales must be distinct factors in (0, 1], got {scales}")
  ladder = make_ladder(ladder_kbps, scales)
  unknown = [codec for codec in codecs if codec not in CODECS]
  if unknown or not codecs:
    raise ValueError(f"unknown codecs {unknown}; choose from {sorted(CODECS)}")
  cores = os.cpu_count() or 1
  jobs = max(1, jobs or cores)

  if out_dir.is_dir():
    remove_stale_temporaries(out_dir)
  if isinstance(sources, (str, os.PathLike)):
    originals, _ = find_sources(sources)
  else:
    originals = [Path(source) for source in sources]
  failures: list[Failure] = []
  by_id: dict[str, Path] = {}
  for original in originals:
    if original.stem in by_id:
      failures.append(Failure(str(original), f"duplicate source id {original.stem!r} "
                              f"(also {by_id[original.stem]}); rename one of them"))
    elif not original.is_file():
      failures.append(Failure(str(original), "file not found"))
    else:
      by_id[original.stem] = original
  failed_sources = len(failures)

  rows: list[dict] = []
  made = skipped = failed_encodes = 0
  total = len(by_id) * len(ladder) * len(codecs)
  with (concurrent.futures.ThreadPoolExecutor(jobs) as pool,
        _progress(total, "make-dataset", progress) as bar):
    running: dict[concurrent.futures.Future, tuple[str, object]] = {}

    def threads_now(extra: int) -> int:
      # Tasks that will run at once: what is queued, up to the pool's size.
      return max(1, cores // max(1, min(jobs, len(running) + extra)))

    def queue_encodes(mezzanine: Mezzanine) -> None:
      nonlocal skipped
      mezzanine_recipe = _mezzanine_recipe(mezzanine.original, scale, max_frames)
      pending = []
      for codec in codecs:
        for rung in ladder:
          recipe = _recipe(mezzanine_recipe, codec, rung)
          sidecar = _encode_path(out_dir, mezzanine, codec, rung).with_suffix(".json")
          row = _load_sidecar(sidecar, recipe)
          if row is not None and (out_dir / row["path"]).is_file():
            rows.append(row)
            skipped += 1
            bar.update(1)
          else:
            pending.append((codec, rung, recipe))
      for codec, rung, recipe in pending:
        future = pool.submit(_make_encode, mezzanine, out_dir, codec, rung, recipe,
                             threads_now(len(pending)))
        running[future] = ("encode", f"{mezzanine.source_id}/"
                                     f"{encode_name(codec, rung.kbps, rung.scale)}")

    to_make = []
    for original in by_id.values():
      recipe = _mezzanine_recipe(original, scale, max_frames)
      reused = _reuse_mezzanine(original, out_dir, recipe)
      if reused is not None:
        queue_encodes(reused)
      else:
        to_make.append((original, recipe))
    for original, recipe in to_make:
      future = pool.submit(_prepare_mezzanine, original, out_dir, recipe,
                           threads_now(len(to_make)))
      running[future] = ("mezzanine", original)

    while running:
      done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
      for future in done:
        kind, name = running.pop(future)
        try:
          result = future.result()
        except Exception as error:  # reported by name; everything else goes on
          if kind == "mezzanine":
            failures.append(Failure(str(name), _source_failure_reason(name, error)))
            failed_sources += 1
            bar.update(len(ladder) * len(codecs))
          else:
            failures.append(Failure(name, _failure_reason(error)))
            failed_encodes += 1
            bar.update(1)
          continue
        if kind == "mezzanine":
          queue_encodes(result)
        else:
          rows.append(result)
          made += 1
          bar.update(1)

  rows.sort(key=lambda row: (row["source"], row["codec"], row["rung"]))
  write_atomically(out_dir / MANIFEST_NAME,
                   "".join(json.dumps(row) + "\n" for row in rows))
  failures.sort(key=lambda failure: failure.name)
  return MakeDatasetResult(rows=rows, failures=failures, num_sources=len(originals),
                           made=made, skipped=skipped, failed_encodes=failed_encodes,
                           failed_sources=failed_sources,
                           seconds=time.monotonic() - started)


def read_manifest(path: str | os.PathLike) -> list[dict]:
  """The rows of a manifest.jsonl."""
  with open(path) as file:
    return [json.loads(line) for line in file if line.strip()]


# ----------------------------------------------------------------------------- CLI


def add_subcommand(subparsers) -> None:
  """Registers `jaxvqa make-dataset`."""
  parser = subparsers.add_parser(
      "make-dataset",
      help="encode sources along a bitrate (and resolution) ladder and VMAF-label each encode",
      description=__doc__.split("\n\n")[0] + " Writes OUT/manifest.jsonl; resumable.")
  parser.add_argument("--sources", required=True, type=Path,
                      help="directory of pristine source videos")
  parser.add_argument("--out", required=True, type=Path, help="output directory")
  parser.add_argument("--ladder", default=DEFAULT_LADDER,
                      help=f"target bitrates, kb/s with optional k/M (default {DEFAULT_LADDER})")
  parser.add_argument("--scales", default=DEFAULT_SCALES,
                      help="resolution factors of the ladder in (0, 1], e.g. 1,0.75,0.5: each "
                           "encode is downscaled (lanczos), encoded and upscaled back (bicubic) "
                           f"for VMAF (default {DEFAULT_SCALES})")
  parser.add_argument("--codec", default="libx264",
                      help=f"comma-separated encoders from {sorted(CODECS)} (default libx264)")
  parser.add_argument("--jobs", type=int, default=None,
                      help="parallel ffmpeg processes (default: all cores, "
                           f"{os.cpu_count()} here)")
  parser.add_argument("--max-frames", type=int, default=None,
                      help="cut each source to its first N frames")
  parser.add_argument("--scale", default=None, help="mezzanine size WIDTHxHEIGHT, e.g. 640x360")
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")
  parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
  """`jaxvqa make-dataset`: 0 when everything was made, 1 when anything failed."""
  try:
    ladder = parse_ladder(args.ladder)
    codecs = parse_codecs(args.codec)
    scales = parse_scales(args.scales)
    scale = parse_scale(args.scale) if args.scale else None
    if args.max_frames is not None and args.max_frames < 1:
      raise ValueError(f"--max-frames must be ≥ 1, got {args.max_frames}")
    if args.jobs is not None and args.jobs < 1:
      raise ValueError(f"--jobs must be ≥ 1, got {args.jobs}")
    originals, skipped = find_sources(args.sources)
  except (ValueError, FileNotFoundError) as error:
    print(f"jaxvqa make-dataset: {error}", file=sys.stderr)
    return 2
  if skipped:
    print(f"jaxvqa make-dataset: ignoring {len(skipped)} files without a video extension "
          f"({', '.join(p.name for p in skipped[:5])}{', ...' if len(skipped) > 5 else ''})",
          file=sys.stderr)
  if not originals:
    print(f"jaxvqa make-dataset: no video files in {args.sources}", file=sys.stderr)
    return 1
  result = make_dataset(originals, args.out, ladder, codecs, args.jobs,
                        max_frames=args.max_frames, scale=scale, scales=scales,
                        progress=not args.no_progress)
  for failure in result.failures:
    print(f"jaxvqa make-dataset: FAILED {failure.name}: {failure.reason}", file=sys.stderr)
  print(f"jaxvqa make-dataset: {len(result.rows)} encodes in "
        f"{Path(args.out) / MANIFEST_NAME}, {len(result.failures)} failures", file=sys.stderr)
  print(f"jaxvqa make-dataset: {result.summary()}", file=sys.stderr)
  return 1 if result.failures else 0

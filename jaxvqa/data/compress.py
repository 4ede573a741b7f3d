"""The paper's training data: each source at a bitrate ladder, VMAF-labelled.

    sources/<id>.mkv                    mezzanine: the source normalised once
    encodes/<id>/<codec>_<kbps>k.<ext>  one encode per (codec, rung)
    encodes/<id>/<codec>_<kbps>k.json   its finished record (sidecar)
    manifest.jsonl                      one JSON row per encode (see MANIFEST_KEYS)

Decisions:
- The mezzanine is lossless x264 (`-qp 0`) yuv420p 8-bit in Matroska, after the
  optional `--scale` (lanczos) and `--max-frames`, with rotation applied and
  audio dropped; odd sizes are cropped by one pixel to even. Encodes are made
  FROM the mezzanine and VMAF compares each encode TO the mezzanine, so both
  sides of VMAF see the same frames, size and pixel format, and the reference
  is bit-exact to what the encoder saw (qp 0 is lossless), at a fraction of
  raw y4m's size.
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
- Parallel: a thread pool of `jobs` workers, each driving one ffmpeg process
  (the GIL is free while ffmpeg runs); each ffmpeg gets cores // jobs threads.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from jaxvqa.data import ffmpeg
from jaxvqa.data import video

MANIFEST_NAME = "manifest.jsonl"
MANIFEST_KEYS = ("source", "source_path", "path", "codec", "rung", "target_kbps",
                 "bitrate_kbps", "vmaf", "vmaf_frames", "width", "height", "num_frames",
                 "fps")
DEFAULT_LADDER = "200k,500k,1M,2M,4M,8M"
VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".y4m", ".ts", ".mts", ".m2ts",
    ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ogv", ".mxf"})
MEZZANINE_SUFFIX = ".mkv"
RECIPE_VERSION = 1  # bump when encoder or VMAF settings change, so old sidecars are redone


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


@dataclasses.dataclass(frozen=True)
class Mezzanine:
  source_id: str
  original: Path  # the user's source file
  path: Path  # absolute path of the mezzanine
  width: int
  height: int
  num_frames: int
  fps: float


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


def kbps_label(kbps: float) -> str:
  """File-name form of a rate: 200 → '200k', 12.5 → '12.5k'."""
  return f"{kbps:g}k"


def encode_name(codec: str, kbps: float) -> str:
  return f"{codec}_{kbps_label(kbps)}"


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


def _stream_facts(path: Path) -> tuple[int, int, int, float]:
  """(width, height, frames, fps) of a file's first video stream, by decoding it.

  fps is frames / summed frame durations, so variable-rate streams get their mean.
  """
  completed = ffmpeg.run_ffmpeg(["-v", "error", "-i", path, "-map", "0:v:0",
                                 "-f", "framecrc", "-"], capture_stdout=True)
  text = completed.stdout.decode()
  durations = [int(line.split(",")[3]) for line in text.splitlines()
               if line and not line.startswith("#")]
  size = re.search(r"#dimensions 0: (\d+)x(\d+)", text)
  time_base = re.search(r"#tb 0: (\d+)/(\d+)", text)
  if not size or not time_base or not durations or sum(durations) <= 0:
    raise EncodeCheckError(f"no video frames decoded from {path}")
  seconds = sum(durations) * int(time_base.group(1)) / int(time_base.group(2))
  return int(size.group(1)), int(size.group(2)), len(durations), len(durations) / seconds


def make_mezzanine(original: Path, out_path: Path, *, scale: tuple[int, int] | None,
                   max_frames: int | None, threads: int) -> Mezzanine:
  """Normalises a source to lossless x264 yuv420p (see the module docstring)."""
  if original.stat().st_size == 0:
    raise EncodeCheckError("empty file (0 bytes)")
  if scale:
    geometry = f"scale={scale[0]}:{scale[1]}:flags=lanczos,setsar=1"
  else:
    geometry = "crop=trunc(iw/2)*2:trunc(ih/2)*2"
  limit = ["-frames:v", str(max_frames)] if max_frames else []
  partial = _partial_path(out_path)
  out_path.parent.mkdir(parents=True, exist_ok=True)
  # -xerror: a decode error (truncated, corrupt) fails the source instead of
  # silently making a shorter mezzanine.
  ffmpeg.run_ffmpeg([
      "-v", "error", "-xerror", "-i", original, "-map", "0:v:0", "-an", "-sn", "-dn",
      "-vf", f"{geometry},format=yuv420p", *limit, "-fps_mode", "passthrough",
      "-c:v", "libx264", "-qp", "0", "-preset", "veryfast", "-threads", str(threads),
      "-f", "matroska", partial])
  os.replace(partial, out_path)
  width, height, frames, fps = _stream_facts(out_path)
  return Mezzanine(original.stem, original, out_path, width, height, frames, fps)


def _packet_bytes(path: Path) -> int:
  """Total size of the video packets (stream copy, container overhead excluded)."""
  completed = ffmpeg.run_ffmpeg(["-v", "error", "-i", path, "-map", "0:v:0", "-c", "copy",
                                 "-f", "framecrc", "-"], capture_stdout=True)
  total = 0
  for line in completed.stdout.decode().splitlines():
    if line and not line.startswith("#"):
      total += int(line.split(",")[4])  # stream, dts, pts, duration, size, crc
  return total


def encode(mezzanine: Mezzanine, codec: str, kbps: float, out_path: Path, *,
           threads: int) -> None:
  """Encodes the mezzanine at `kbps` (two-pass where the codec allows) to `out_path`."""
  settings = CODECS[codec]
  partial = _partial_path(out_path).absolute()
  out_path.parent.mkdir(parents=True, exist_ok=True)
  common = ["-v", "error", "-i", Path(mezzanine.path).absolute(), "-map", "0:v:0", "-an",
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


def measure_vmaf(distorted: Path, reference: Path, *, threads: int) -> list[float]:
  """Per-frame VMAF of `distorted` against `reference` (libvmaf default model)."""
  with tempfile.TemporaryDirectory(prefix="jaxvqa_vmaf_") as work_dir:
    # log_path is relative to cwd so the filter graph never escapes a user's path.
    graph = ("[0:v]setpts=PTS-STARTPTS[distorted];[1:v]setpts=PTS-STARTPTS[reference];"
             f"[distorted][reference]libvmaf=log_fmt=json:log_path=vmaf.json"
             f":n_threads={threads}")
    ffmpeg.run_ffmpeg(["-v", "error", "-i", Path(distorted).absolute(),
                       "-i", Path(reference).absolute(), "-lavfi", graph, "-f", "null", "-"],
                      cwd=work_dir)
    with open(os.path.join(work_dir, "vmaf.json")) as file:
      log = json.load(file)
  return [float(frame["metrics"]["vmaf"]) for frame in log["frames"]]


# ----------------------------------------------------------------------------- the job


def _recipe(mezzanine_recipe: dict, codec: str, kbps: float) -> dict:
  settings = CODECS[codec]
  return {"version": RECIPE_VERSION, "mezzanine": mezzanine_recipe, "codec": codec,
          "target_kbps": kbps, "options": list(settings.options),
          "two_pass": settings.two_pass}


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


def _make_encode(mezzanine: Mezzanine, out_dir: Path, codec: str, rung: int, kbps: float,
                 recipe: dict, threads: int) -> dict:
  encode_path = out_dir / "encodes" / mezzanine.source_id / (
      encode_name(codec, kbps) + CODECS[codec].extension)
  encode(mezzanine, codec, kbps, encode_path, threads=threads)
  packet_bytes = _packet_bytes(encode_path)
  vmaf_frames = measure_vmaf(encode_path, mezzanine.path, threads=threads)
  if len(vmaf_frames) != mezzanine.num_frames:
    raise EncodeCheckError(f"VMAF scored {len(vmaf_frames)} frames, the source has "
                           f"{mezzanine.num_frames}: the encoder dropped or added frames")
  duration = mezzanine.num_frames / mezzanine.fps
  row = {
      "source": mezzanine.source_id,
      "source_path": mezzanine.path.relative_to(out_dir).as_posix(),
      "path": encode_path.relative_to(out_dir).as_posix(),
      "codec": codec,
      "rung": rung,
      "target_kbps": float(kbps),
      "bitrate_kbps": packet_bytes * 8 / duration / 1000,
      "vmaf": sum(vmaf_frames) / len(vmaf_frames),
      "vmaf_frames": vmaf_frames,
      "width": mezzanine.width,
      "height": mezzanine.height,
      "num_frames": mezzanine.num_frames,
      "fps": mezzanine.fps,
  }
  write_atomically(encode_path.with_suffix(".json"),
                   json.dumps({"recipe": recipe, "row": row}))
  return row


def _prepare_mezzanine(original: Path, out_dir: Path, recipe: dict, threads: int
                       ) -> Mezzanine:
  """The source's mezzanine, reused when its sidecar says it was made by `recipe`."""
  path = out_dir / "sources" / (original.stem + MEZZANINE_SUFFIX)
  sidecar = path.with_suffix(".json")
  try:
    with open(sidecar) as file:
      record = json.load(file)
    if record["recipe"] == recipe and path.is_file():
      return Mezzanine(original.stem, original, path, record["width"], record["height"],
                       record["num_frames"], record["fps"])
  except (OSError, ValueError, KeyError):
    pass
  mezzanine = make_mezzanine(original, path, scale=recipe["scale"],
                             max_frames=recipe["max_frames"], threads=threads)
  write_atomically(sidecar, json.dumps({
      "recipe": recipe, "width": mezzanine.width, "height": mezzanine.height,
      "num_frames": mezzanine.num_frames, "fps": mezzanine.fps}))
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
                 progress: bool = True) -> MakeDatasetResult:
  """Encodes every source at every rung and codec and VMAF-labels each encode.

  Args:
    sources: a directory (its video files, by extension) or a list of files.
    out_dir: output root (layout in the module docstring); created if needed.
    ladder_kbps: target bitrates in kb/s; rung = index in ascending order.
    codecs: encoder names, keys of `CODECS`.
    jobs: parallel ffmpeg processes (default: all cores).
    max_frames: cut each source to its first N frames.
    scale: (width, height) of the mezzanines, even numbers.
    progress: show a tqdm bar on stderr.
  Returns:
    the manifest rows (also written to out_dir/manifest.jsonl) and the failures
    (each named; everything else is still made).
  """
  out_dir = Path(out_dir).absolute()
  ladder = sorted(float(k) for k in ladder_kbps)
  if not ladder or len(set(ladder)) != len(ladder) or ladder[0] <= 0:
    raise ValueError(f"ladder_kbps must be distinct positive rates, got {list(ladder_kbps)}")
  unknown = [codec for codec in codecs if codec not in CODECS]
  if unknown or not codecs:
    raise ValueError(f"unknown codecs {unknown}; choose from {sorted(CODECS)}")
  jobs = max(1, jobs or os.cpu_count() or 1)
  threads = max(1, (os.cpu_count() or 1) // jobs)

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

  mezzanines: list[Mezzanine] = []
  with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
    futures = {
        pool.submit(_prepare_mezzanine, original, out_dir,
                    _mezzanine_recipe(original, scale, max_frames), threads): original
        for original in by_id.values()}
    for future in concurrent.futures.as_completed(futures):
      try:
        mezzanines.append(future.result())
      except Exception as error:  # reported by name; the other sources go on
        original = futures[future]
        failures.append(Failure(str(original), _source_failure_reason(original, error)))

    rows: list[dict] = []
    pending = []
    for mezzanine in sorted(mezzanines, key=lambda m: m.source_id):
      mezzanine_recipe = _mezzanine_recipe(mezzanine.original, scale, max_frames)
      for codec in codecs:
        for rung, kbps in enumerate(ladder):
          recipe = _recipe(mezzanine_recipe, codec, kbps)
          sidecar = (out_dir / "encodes" / mezzanine.source_id /
                     (encode_name(codec, kbps) + ".json"))
          row = _load_sidecar(sidecar, recipe)
          if row is not None and (out_dir / row["path"]).is_file():
            rows.append(row)
          else:
            pending.append((mezzanine, codec, rung, kbps, recipe))

    with _progress(len(pending), "make-dataset", progress) as bar:
      futures = {pool.submit(_make_encode, mezzanine, out_dir, codec, rung, kbps, recipe,
                             threads): f"{mezzanine.source_id}/{encode_name(codec, kbps)}"
                 for mezzanine, codec, rung, kbps, recipe in pending}
      for future in concurrent.futures.as_completed(futures):
        try:
          rows.append(future.result())
        except Exception as error:
          failures.append(Failure(futures[future], _failure_reason(error)))
        bar.update(1)

  rows.sort(key=lambda row: (row["source"], row["codec"], row["rung"]))
  write_atomically(out_dir / MANIFEST_NAME,
                   "".join(json.dumps(row) + "\n" for row in rows))
  failures.sort(key=lambda failure: failure.name)
  return MakeDatasetResult(rows=rows, failures=failures)


def read_manifest(path: str | os.PathLike) -> list[dict]:
  """The rows of a manifest.jsonl."""
  with open(path) as file:
    return [json.loads(line) for line in file if line.strip()]


# ----------------------------------------------------------------------------- CLI


def add_subcommand(subparsers) -> None:
  """Registers `jaxvqa make-dataset`."""
  parser = subparsers.add_parser(
      "make-dataset", help="encode sources at a bitrate ladder and VMAF-label each encode",
      description=__doc__.split("\n\n")[0] + " Writes OUT/manifest.jsonl; resumable.")
  parser.add_argument("--sources", required=True, type=Path,
                      help="directory of pristine source videos")
  parser.add_argument("--out", required=True, type=Path, help="output directory")
  parser.add_argument("--ladder", default=DEFAULT_LADDER,
                      help=f"target bitrates, kb/s with optional k/M (default {DEFAULT_LADDER})")
  parser.add_argument("--codec", default="libx264",
                      help=f"comma-separated encoders from {sorted(CODECS)} (default libx264)")
  parser.add_argument("--jobs", type=int, default=None,
                      help="parallel ffmpeg processes (default: all cores)")
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
                        max_frames=args.max_frames, scale=scale,
                        progress=not args.no_progress)
  for failure in result.failures:
    print(f"jaxvqa make-dataset: FAILED {failure.name}: {failure.reason}", file=sys.stderr)
  print(f"jaxvqa make-dataset: {len(result.rows)} encodes in "
        f"{Path(args.out) / MANIFEST_NAME}, {len(result.failures)} failures", file=sys.stderr)
  return 1 if result.failures else 0

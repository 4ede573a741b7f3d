"""The Python API: a trained run as a scorer of files and arrays, and as a differentiable loss.

    m = jaxvqa.load()                 # the shipped model; jaxvqa.load(WORKDIR): a training run
    m.score("clip.mp4")               # float, calibrated: the set's own units (m.units)
    m.score_many(paths)               # [float | None]; m.last_errors = {path: reason} for the Nones
    m.score("rung.mp4", display_size=(320, 180))  # a ladder's lower rung, as trained: see `score`
    m.score_frames(frames_uint8)      # decoded frames [T, H, W, 3] or [B, T, H, W, 3]
    f = jaxvqa.quality_fn(m)          # pure JAX: float clip [T, S, S, 3] in [0, 255] -> score []

Everything a score depends on comes from the existing stages, never a copy of them: files are
decoded, sampled and prepared by `scoring.decode_video` (what `jaxvqa score` and `eval.py` do),
arrays are sampled by `video.sample_frame_indices` and prepared by `FrameOptions.prepare`, clips are
scored by `TrainedModel.raw_scores` and calibrated by `TrainedModel.calibrate`. So
`m.score(path)`, `m.score_frames(<all decoded frames of path>)` and `jaxvqa score path` agree.

`quality_fn` is the same network (`steps.score_step`) on one clip that is already model input (T
frames of S×S, see `QualityModel.prepare`): sampling and resizing pick and resample pixels, so the
function starts after them. The calibration follows in JAX (`calibrate_jax`), so the value is
`m.score` of that clip; its gradient is zero where the calibration is clipped to the labels' range.

`load()` with no argument loads the model shipped inside the package (docs/MODEL.md); an
installation without it says so in one line.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvqa.evaluate import calibration as calibration_lib
from jaxvqa import metrics, scoring
from jaxvqa.serve import inference
from jaxvqa.train import steps
from jaxvqa.data import decode, video
from jaxvqa.scoring import validity


class QualityModel:
  """A trained run as a scorer of video files and frame arrays.

  Attributes:
    trained: the `inference.TrainedModel` underneath (config, weights on the mesh, calibration).
    last_errors: {path: reason} of the files the last `score_many` (or `score`) call could not
      score, empty when all were scored; the reason is what `jaxvqa score` prints for the file.
      A list of Optional floats plus this dict, rather than result objects, keeps the common
      case (`scores = m.score_many(paths)`) one line and the failures still named.
    last_warnings: {path: {name: detail}} of the files the last call scored whose score may mean
      nothing (`scoring.validity`: flat, noise-like, small or one-frame input, or `truncated`
      where allowed), as the `warnings` column of `jaxvqa score`; empty when none. A flat or
      noise-like file scores the worst on the scale (`scoring.validity`).
  """

  def __init__(self, trained: inference.TrainedModel):
    self.trained = trained
    self.last_errors: dict[str, str] = {}
    self.last_warnings: dict[str, dict[str, str]] = {}

  def __repr__(self) -> str:
    return f"QualityModel({self.trained.checkpoint.describe()}; {self.trained.describe()})"

  @property
  def input_shape(self) -> tuple[int, int, int, int]:
    """(T, S, S, 3): the prepared clip that the network and `quality_fn` take."""
    return self.trained.clip_shape

  @property
  def identity(self) -> str:
    """The model's fingerprint, as on every row `jaxvqa score` writes (`TrainedModel.identity`)."""
    return self.trained.identity

  @property
  def scale(self) -> str:
    """What a score means: the label scale and calibration, or raw model output."""
    return scoring.scale_description(self.trained)

  @property
  def units(self) -> str | None:
    """The units of `score`: the training set's published scale ("MOS (1-5)", "VMAF (0-100)",
    "DMOS (0-100, lower is better)"); None for raw output or a calibration saved without them."""
    calibration = self.trained.calibration
    return calibration.units.describe() if calibration and calibration.units else None

  def score(
      self,
      path: str | bytes | os.PathLike,
      display_size: tuple[int, int] | None = None,
      *,
      allow_truncated: bool = False,
  ) -> float:
    """The calibrated score of one video file (the whole video, as `jaxvqa score` gives it).

    path: a str or os.PathLike, or bytes as the OS gives names (read with os.fsdecode).

    display_size: (width, height) to decode the file at first, as `jaxvqa score --display-size
      WxH` does: with ffmpeg's bicubic in yuv420p, as the training frames of a ladder's lower
      rungs were made (`manifest.read_display_frames`). Give a ladder's top-rung size to score
      its lower-resolution rungs as displayed; a file already of that size scores as without it.
    allow_truncated: score a file that ended early from the frames it has (`last_warnings` says
      so), as `jaxvqa score --allow-truncated`; otherwise it is an error saying where decoding
      stopped.
    Raises decode.VideoDecodeError naming the file and why it cannot be scored; ValueError naming
    display_size when it is not two positive integers.
    """
    (score,) = self.score_many([path], display_size=display_size, allow_truncated=allow_truncated)
    if score is None:
      name = os.fsdecode(path)
      raise decode.VideoDecodeError(f"{name}: {self.last_errors[name]}")
    return score

  def score_many(
      self,
      paths: Sequence[str | bytes | os.PathLike],
      *,
      workers: int = 4,
      progress: bool = False,
      display_size: tuple[int, int] | None = None,
      allow_truncated: bool = False,
  ) -> list[float | None]:
    """Calibrated scores of `paths`, in their order; None for a file that cannot be scored.

    A file that is missing, unreadable or not a decodable video does not stop the others: its
    score is None and `self.last_errors[path]` says why (replaced on every call).
    Decoding runs in `workers` threads while the model scores earlier files. display_size: every
    file decoded at (width, height) first, as in `score`; allow_truncated as in `score`.
    """
    if isinstance(paths, (str, bytes, os.PathLike)):
      raise TypeError(
          f"score_many takes a list of paths, got the single path {paths!r}; "
          "use score(path) for one file"
      )
    names = [os.fsdecode(path) for path in paths]  # bytes names as the OS gives them back as str
    results, failures = scoring.score_videos(
        names,
        self.trained,
        display_size=display_size,
        allow_truncated=allow_truncated,
        workers=workers,
        progress=progress,
    )
    # Both lists are in the order of `names`, and each name is in exactly one of them.
    scored, failed = iter(results), iter(failures)
    next_result, next_failure = next(scored, None), next(failed, None)
    scores: list[float | None] = []
    self.last_errors, self.last_warnings = {}, {}
    for name in names:
      if next_result is not None and next_result.path == name:
        scores.append(next_result.score)
        if next_result.warnings:
          self.last_warnings[name] = {w.name: w.detail for w in next_result.warnings}
        next_result = next(scored, None)
      else:
        scores.append(None)
        self.last_errors[name] = next_failure.reason
        next_failure = next(failed, None)
    return scores

  def prepare(self, frames: Any) -> np.ndarray:
    """Decoded frames → the model-input clip(s) that `score` would make of a file with them.

    frames: uint8 [T, H, W, 3] (all frames of a video, RGB) or a batch [B, T, H, W, 3] of
      videos of one size. Any T ≥ 1, H, W: T frames are sampled by segment centres and each is
      resized and centre-cropped (or cut into fragments) as the run's config says.
    Returns uint8 [T', S, S, 3] (or [B, T', S, S, 3]) with (T', S, S, 3) = `input_shape`.
    Raises ValueError naming the expected shape and dtype when `frames` has another.
    """
    frames = _checked_frames(frames)
    if frames.ndim == 5:
      return np.stack([self.prepare(one) for one in frames])
    options = self.trained.frames
    indices = video.sample_frame_indices(len(frames), options.num_frames, train=False, rng=None)
    return np.ascontiguousarray(options.prepare(frames[indices]))

  def load_clip(
      self, path: str | os.PathLike, display_size: tuple[int, int] | None = None
  ) -> np.ndarray:
    """The model-input clip uint8 [T, S, S, 3] of a video file, as `score(path, display_size)`
    makes it."""
    display_size = scoring.check_display_size(display_size)
    return scoring.decode_video(path, self.trained.frames, display_size=display_size).clips[0]

  def score_frames(self, frames: Any) -> float | list[float]:
    """The calibrated score of decoded frames [T, H, W, 3] uint8 (a float), or of each video of a
    batch [B, T, H, W, 3] (a list of B floats); see `prepare` for what happens to them.

    Scoring all frames of a file equals `score(file)`; scoring a few sampled frames is scoring a
    shorter video. Flat or noise-like frames score the worst on the scale, as files do
    (`scoring.validity`); `last_warnings` then names them by their index in the batch ("0", …).
    """
    clips = self.prepare(frames)
    batched = clips.ndim == 5
    clips = clips if batched else clips[None]
    scores = self.trained.calibrate(self.trained.raw_scores(clips))
    videos = _checked_frames(frames)
    videos = videos if batched else videos[None]
    self.last_warnings, worst = {}, self.trained.worst_score
    options = self.trained.frames
    for index, video_frames in enumerate(videos):
      # The frames the model reads, as a file's check reads the frames its score decoded.
      sampled = video.sample_frame_indices(
          len(video_frames), options.num_frames, train=False, rng=None
      )
      warnings = validity.check_frames(
          video_frames[np.unique(sampled)], len(video_frames), options.size
      )
      scores[index : index + 1], warnings = validity.withhold_unmeasured(
          scores[index : index + 1], warnings, worst
      )
      if warnings:
        self.last_warnings[str(index)] = {w.name: w.detail for w in warnings}
    return scores.tolist() if batched else scores.tolist()[0]


def _checked_frames(frames: Any) -> np.ndarray:
  """`frames` as a uint8 array [T, H, W, 3] or [B, T, H, W, 3], or a ValueError saying so."""
  array = np.asarray(frames)
  expected = (
      "expected decoded RGB frames, uint8 [T, H, W, 3] (one video) or [B, T, H, W, 3] "
      "(videos of one size)"
  )
  if array.dtype != np.uint8:
    raise ValueError(
        f"frames have dtype {array.dtype}; {expected}. Convert pixels in [0, 255] with "
        "np.clip(frames, 0, 255).astype(np.uint8), or use jaxvqa.quality_fn for float frames"
    )
  if array.ndim not in (4, 5) or array.shape[-1] != 3 or 0 in array.shape:
    raise ValueError(
        f"frames have shape {array.shape}; {expected}, with T, H, W ≥ 1 "
        "(grey frames: np.repeat(frames[..., None], 3, -1))"
    )
  return array


def load(
    workdir: str | os.PathLike | None = None,
    *,
    which: str = "best",
    ema: bool = True,
    num_devices: int | None = None,
) -> QualityModel:
  """The model shipped with jaxvqa (no argument; docs/MODEL.md), or the run in `workdir` (what
  `python train.py` wrote; a directory with a shipped model's model.json also works).

  which: "best" (highest validation SRCC; carries the calibration) or "latest" (raw scores).
  ema: the EMA weights (what validation chose) or the raw ones. num_devices: devices to score on
  (default all). Raises checkpointing.CheckpointNotFoundError (a FileNotFoundError) when there is
  no run or checkpoint there, and checkpointing.CheckpointError for a damaged one; each message is
  one line naming what is wrong.
  """
  return QualityModel(inference.load_model(workdir, which=which, ema=ema, num_devices=num_devices))


def calibrate_jax(raw: jax.Array, calibration: calibration_lib.Calibration | None) -> jax.Array:
  """`calibration(raw)` in JAX, differentiable (None: raw unchanged). Same fits as
  `metrics.LogisticFit.__call__` (logistic via the same `sigmoid`), clipped to the labels' range."""
  if calibration is None:
    return raw
  fit = calibration.fit
  if fit.kind == metrics.FIT_LOGISTIC:
    top, bottom, centre, scale = fit.params
    value = bottom + (top - bottom) * jax.nn.sigmoid((raw - centre) / abs(scale))
  elif fit.kind == metrics.FIT_LINEAR:
    slope, intercept = fit.params
    value = slope * raw + intercept
  elif fit.kind == metrics.FIT_CONSTANT:
    value = jnp.full_like(raw, fit.params[0])
  else:
    raise ValueError(
        f"calibration kind {fit.kind!r} is unknown; expected one of {metrics.FIT_KINDS}"
    )
  return jnp.clip(value, calibration.low, calibration.high)


def quality_fn(
    model: QualityModel | inference.TrainedModel | str | os.PathLike,
    *,
    calibrated: bool = True,
    which: str = "best",
) -> Callable[[jax.Array], jax.Array]:
  """A pure JAX function of a model-input clip to its score, jit-able and differentiable.

  f(clip): clip float [T, S, S, 3] (or uint8) of pixels in [0, 255], RGB, with (T, S, S, 3) =
  `QualityModel.input_shape`, i.e. frames already sampled and at the model's size (make one with
  `QualityModel.prepare` or `load_clip`, or sample and resize differentiably yourself). Returns a
  float32 scalar: the score `score_frames` gives for those frames (calibrated: the label scale),
  or the network's raw output with calibrated=False. For a batch use `jax.vmap(f)`.

  Gradients flow through the network in the run's compute dtype (config.model.dtype) and through
  the calibration, which is increasing but clipped to the validation labels' range: outside that
  range the calibrated gradient is zero, and the raw score (calibrated=False) still has one.
  The weights live on one device (the default) and are closed over, so f depends on `clip` only;
  the network inside is one jitted program per run and clip shape, compiled once.

  model: a QualityModel, a TrainedModel, or a workdir (loaded with `which`).
  """
  if isinstance(model, (str, os.PathLike)):
    model = load(model, which=which, num_devices=1)
  trained = model.trained if isinstance(model, QualityModel) else model
  # The scorer's copy is replicated over the mesh; one copy keeps a single clip on one device.
  params = jax.device_put(jax.device_get(trained.params))
  network, clip_shape = trained.model, trained.clip_shape
  calibration = trained.calibration if calibrated else None

  def score_clip(clip: jax.Array) -> jax.Array:
    if tuple(np.shape(clip)) != clip_shape:
      raise ValueError(
          f"quality_fn takes one clip of shape {clip_shape} (T, S, S, 3) with pixels "
          f"in [0, 255], got shape {tuple(np.shape(clip))}; make one with "
          "QualityModel.prepare(frames) or load_clip(path), and jax.vmap for batches"
      )
    return calibrate_jax(_raw_score(params, clip, network=network), calibration)

  return score_clip


@functools.partial(jax.jit, static_argnames="network")
def _raw_score(params: Any, clip: jax.Array, *, network: Any) -> jax.Array:
  """The network's score of one clip [T, S, S, 3].

  One compiled program per network and clip shape, shared by every `quality_fn` of a run (the
  weights are an argument, not constants baked into the program), calibrated or not.
  """
  frames = jnp.asarray(clip, jnp.float32)[None]
  return steps.score_step(params, {"frames": frames}, model=network)[0]


__all__ = ["QualityModel", "calibrate_jax", "load", "quality_fn"]

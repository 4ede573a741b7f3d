"""A model as a serialized `jax.export` program that scores with jax alone (`jaxvqa export`).

    QualityModel ──quality_fn (vmapped) + calibrate_jax──▶ f(clips [B, T, S, S, 3]) → (score, raw)
      ──jax.export, platforms cpu + cuda, batch B symbolic──▶ DIR/scorer.jaxexport (StableHLO)
      + DIR/scorer.json (input, frame preparation, model identity, calibration, versions)
      + DIR/score_exported.py (the loader, `jaxvqa.serve.exported`, copied: jax + numpy only)

The program is the Python API's pure function, not a copy of the network: `api.quality_fn` scores
one clip with the run's weights, `jax.vmap` makes it a batch function and `api.calibrate_jax` maps
its raw score onto the label scale, so the exported score is `QualityModel.score_frames` of the same
clips (in float32, the network's precision). The weights are constants inside the program, so the
file's size is about the weights' (float32) times the number of platforms, plus the code.

The SwinV2 window attention is the XLA path in every program but one for CUDA alone with a fixed
batch (`attention_for`), which holds the fused Pallas kernel as Python scoring runs it on a GPU. That
kernel is Triton code in a custom call whose stability jax.export does not promise, so a CUDA-only
program may need exporting again after a jax upgrade sooner than the others.

The batch dimension is symbolic by default ("b"): one program takes any number of clips, and each
batch size is compiled on its first call. `batch=N` fixes it instead, for runtimes that want static
shapes; the loader then scores in chunks of N.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

import jaxvqa
from jaxvqa.models import vqa
from jaxvqa.serve import api
from jaxvqa.serve import exported as exported_lib

# jax.export's platform names (jax.export.export(..., platforms=...)).
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
DEFAULT_PLATFORMS = ("cpu", "cuda")
# The custom calls of Pallas' Triton kernels (older and newer jaxlib): jax.export does not vouch
# for their stability, so it refuses them unless told; only a CUDA-only program holds them.
TRITON_CALL_TARGETS = ("__gpu$xla.gpu.triton", "triton_kernel_call_ffi")


@dataclasses.dataclass(frozen=True)
class ExportResult:
  """What `export_scorer` wrote."""

  directory: Path
  program_bytes: int  # size of scorer.jaxexport
  seconds: float  # wall time of tracing, lowering and serialising
  metadata: dict[str, Any]

  def summary(self) -> str:
    return (
        f"wrote {self.directory / exported_lib.PROGRAM_FILE} "
        f"({self.program_bytes / 1e6:.2f} MB; platforms "
        f"{', '.join(self.metadata['platforms'])}; "
        f"input [{', '.join(map(str, self.metadata['input']['shape']))}] float32), "
        f"{exported_lib.METADATA_FILE} and {exported_lib.LOADER_FILE} in {self.seconds:.1f} s"
    )


def parse_platforms(text: str) -> tuple[str, ...]:
  """ "cpu,cuda" → ("cpu", "cuda"); ValueError naming an unknown or repeated platform."""
  platforms = tuple(name.strip().lower() for name in text.split(",") if name.strip())
  unknown = [name for name in platforms if name not in PLATFORMS]
  if not platforms or unknown:
    raise ValueError(f"platforms {text!r}: expected a comma-separated list of {PLATFORMS}")
  if len(set(platforms)) != len(platforms):
    raise ValueError(f"platforms {text!r} names one platform twice")
  return platforms


def attention_for(platforms: Sequence[str], batch: int | None) -> str:
  """The window-attention path (SwinV2.attention_impl) of a program for `platforms` and `batch`.

  Only a program for CUDA alone with a fixed batch takes the machine's choice ("auto", the fused
  kernel, unless JAXVQA_ATTENTION forces another path): Pallas lowers the kernel for one platform
  at a time, its Triton grid (windows × heads) cannot follow a symbolic batch, and its Triton code
  is not among jax.export's stable custom calls. Anything else gets "xla", which every platform
  compiles, so an export for CPU, or for CPU and CUDA, holds no GPU kernel.
  """
  kernel_allowed = tuple(platforms) == ("cuda",) and batch is not None
  return vqa.attention_impl_to_run() if kernel_allowed else "xla"


def scorer_function(model: api.QualityModel, attention_impl: str = "xla"):
  """f(clips float32 [B, T, S, S, 3]) → (score [B], raw score [B]): the function that is exported,
  its window attention on path `attention_impl`."""
  raw_score = jax.vmap(
      api.quality_fn(model.trained.with_attention(attention_impl), calibrated=False)
  )
  calibration = model.trained.calibration

  def score_clips(clips: jax.Array) -> tuple[jax.Array, jax.Array]:
    raw = raw_score(clips)
    return api.calibrate_jax(raw, calibration), raw

  return score_clips


def export_program(
    model: api.QualityModel,
    *,
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    batch: int | None = None,
) -> jax.export.Exported:
  """The model's scorer as a `jax.export.Exported` for `platforms`, batch symbolic or `batch`."""
  if batch is not None and batch < 1:
    raise ValueError(f"batch must be ≥ 1 (or None for any batch), got {batch}")
  batch_dim = batch if batch is not None else jax.export.symbolic_shape("b")[0]
  clips = jax.ShapeDtypeStruct((batch_dim, *model.input_shape), jnp.float32)
  attention_impl = attention_for(platforms, batch)
  allowed = [] if attention_impl == "xla" else TRITON_CALL_TARGETS
  return jax.export.export(
      jax.jit(scorer_function(model, attention_impl)),
      platforms=tuple(platforms),
      disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(name) for name in allowed],
  )(clips)


def describe_frames(model: api.QualityModel) -> dict[str, Any]:
  """How a video becomes one input clip, for someone preparing clips without jaxvqa."""
  options = model.trained.frames
  if options.mode == "resize_crop":
    resize = (
        f"each frame: short side resized to {options.size} (PIL bicubic over the centre "
        f"square), centre {options.size}x{options.size} crop"
    )
  else:
    patch = options.size // options.fragment_grid
    resize = (
        f"each frame: a {options.fragment_grid}x{options.fragment_grid} grid of "
        f"{patch}x{patch} native-resolution fragments at the grid cells' centres, tiled "
        f"into {options.size}x{options.size}"
    )
  return {
      **dataclasses.asdict(options),
      "sampling": (
          f"{options.num_frames} frames: the video's N frames cut into segments "
          f"[floor(i*N/{options.num_frames}), floor((i+1)*N/{options.num_frames})), "
          "the centre frame of each (the later of two), repeats when N is smaller"
      ),
      "resize": resize,
      "description": (
          f"{options.num_frames} frames sampled by segment centres, {options.mode} to "
          f"{options.size}x{options.size}; jaxvqa.QualityModel.prepare(frames) makes "
          "them"
      ),
  }


def scorer_metadata(
    model: api.QualityModel, program: jax.export.Exported, *, batch: int | None
) -> dict[str, Any]:
  """scorer.json: everything a caller needs besides the program (`serve.exported` reads it)."""
  trained = model.trained
  calibration = trained.calibration
  return {
      "format": exported_lib.FORMAT,
      "format_version": exported_lib.FORMAT_VERSION,
      "program": exported_lib.PROGRAM_FILE,
      "platforms": list(program.platforms),
      "input": {
          "shape": [batch if batch is not None else "b", *model.input_shape],
          "batch": batch,
          "dtype": "float32",
          "layout": "clips, frames, height, width, RGB; pixels in [0, 255] (uint8 values)",
      },
      "outputs": {
          "score": f"float32 [B]: {model.scale}",
          "raw_score": "float32 [B]: the network's output before calibration",
      },
      "frames": describe_frames(model),
      "model": {
          "identity": model.identity,
          "checkpoint": trained.checkpoint.to_dict(),
          "architecture": trained.describe(),
          "scale": model.scale,
      },
      "calibration": calibration.to_dict() if calibration is not None else None,
      "attention_impl": attention_for(program.platforms, batch),
      "jaxvqa_version": jaxvqa.__version__,
      "jax_version": jax.__version__,
      "jaxlib_version": importlib.metadata.version("jaxlib"),
      "calling_convention_version": program.calling_convention_version,
  }


def export_scorer(
    model: api.QualityModel,
    out_dir: str | os.PathLike,
    *,
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    batch: int | None = None,
) -> ExportResult:
  """Writes the scorer program, scorer.json and the loader into `out_dir` (module docstring).

  Files are written under temporary names and renamed, so an interrupted export never leaves a
  program that looks complete beside another model's metadata.
  """
  start = time.perf_counter()
  program = export_program(model, platforms=platforms, batch=batch)
  blob = program.serialize()
  metadata = scorer_metadata(model, program, batch=batch)
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  _write_atomically(out_dir / exported_lib.PROGRAM_FILE, bytes(blob))
  _write_atomically(
      out_dir / exported_lib.METADATA_FILE, (json.dumps(metadata, indent=2) + "\n").encode()
  )
  loader = out_dir / exported_lib.LOADER_FILE
  shutil.copyfile(exported_lib.__file__, loader.with_name(loader.name + ".partial"))
  os.replace(loader.with_name(loader.name + ".partial"), loader)
  return ExportResult(out_dir, len(blob), time.perf_counter() - start, metadata)


def _write_atomically(path: Path, data: bytes) -> None:
  partial = path.with_name(path.name + ".partial")
  partial.write_bytes(data)
  os.replace(partial, path)

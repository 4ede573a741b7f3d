"""Scores with a scorer that `jaxvqa export` wrote: needs jax and numpy only (and flatbuffers,
which jax uses to read the program: `pip install jax flatbuffers`).

    DIR/scorer.jaxexport   the serialized `jax.export` program (StableHLO), code for each platform
    DIR/scorer.json        what it takes and returns, the model's identity, its calibration
    DIR/score_exported.py  a copy of this file, so DIR alone (plus jax) is enough

    scorer = load(DIR)                  # ExportedScorer; deserialising takes under a second
    scores = scorer.score(clips)        # float64 [B]: calibrated, the label scale (VMAF 0-100, ...)
    scores, raw = scorer(clips)         # ... and the network's raw output [B]

    python DIR/score_exported.py DIR clips.npy     # prints one score per clip

clips: prepared clips, uint8 or float [B, T, S, S, 3] (or one clip [T, S, S, 3]), RGB pixels in
[0, 255], with (T, S, S, 3) = `scorer.input_shape`: T frames sampled from the video and each resized
to S×S as scorer.json's "frames" entry says (`jaxvqa.QualityModel.prepare` does exactly this).
Sampling and resizing happen before the program because they pick and resample pixels on the host.

This file imports nothing from jaxvqa or Flax on purpose: an inference machine may carry jax alone.
The first call for each batch size compiles the program for the local platform (seconds); later
calls of that size reuse it. A program exported with a fixed batch is called in chunks of that
batch, the last one padded, so any number of clips can be scored.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax import export as jax_export

FORMAT = "jaxvqa-exported-scorer"
FORMAT_VERSION = 1
PROGRAM_FILE = "scorer.jaxexport"
METADATA_FILE = "scorer.json"
LOADER_FILE = "score_exported.py"


class ExportedScorerError(Exception):
  """A scorer directory that cannot be used; the message names the file and what to do."""


class ExportedScorer:
  """A deserialized scorer program and the metadata written beside it.

  Attributes:
    exported: the `jax.export.Exported` program: float32 clips [B, T, S, S, 3] → (score [B],
      raw score [B]), float32.
    metadata: scorer.json as a dict (input, frames, model, calibration, versions).
  """

  def __init__(self, exported: jax_export.Exported, metadata: dict[str, Any]):
    self.exported = exported
    self.metadata = metadata
    self._call = jax.jit(exported.call)

  def __repr__(self) -> str:
    model = self.metadata["model"]
    return (
        f"ExportedScorer({model['identity']}, input {self.input_shape}, "
        f"platforms {list(self.exported.platforms)})"
    )

  @property
  def input_shape(self) -> tuple[int, int, int, int]:
    """(T, S, S, 3): one prepared clip."""
    return tuple(self.metadata["input"]["shape"][1:])

  @property
  def batch(self) -> int | None:
    """The batch the program was exported for, or None when it takes any batch."""
    return self.metadata["input"]["batch"]

  def __call__(self, clips: Any) -> tuple[np.ndarray, np.ndarray]:
    """(scores, raw scores), float64 [B] each, of clips [B, T, S, S, 3] (module docstring)."""
    clips = self._checked(clips)
    size = self.batch or len(clips)
    scores, raws = [], []
    for start in range(0, len(clips), size):
      chunk = clips[start : start + size]
      padded = np.zeros((size, *self.input_shape), np.float32)
      padded[: len(chunk)] = chunk
      score, raw = self._call(padded)
      scores.append(np.asarray(score, np.float64)[: len(chunk)])
      raws.append(np.asarray(raw, np.float64)[: len(chunk)])
    return np.concatenate(scores), np.concatenate(raws)

  def score(self, clips: Any) -> np.ndarray:
    """Calibrated scores float64 [B] of clips [B, T, S, S, 3]."""
    return self(clips)[0]

  def _checked(self, clips: Any) -> np.ndarray:
    array = np.asarray(clips)
    if array.ndim == 4:
      array = array[None]
    if array.shape[1:] != self.input_shape or len(array) == 0:
      raise ValueError(
          f"clips have shape {np.shape(clips)}; this scorer takes prepared clips [B, "
          f"{', '.join(map(str, self.input_shape))}] (or one clip without B), RGB in [0, 255]: "
          f"{self.metadata['frames']['description']}"
      )
    if not (array.dtype == np.uint8 or np.issubdtype(array.dtype, np.floating)):
      raise ValueError(
          f"clips have dtype {array.dtype}; expected uint8 or float pixels in [0, 255]"
      )
    return array.astype(np.float32)


def load(directory: str | os.PathLike) -> ExportedScorer:
  """The scorer that `jaxvqa export --out DIRECTORY` wrote.

  Raises ExportedScorerError naming the missing or unusable file, or saying that the program has no
  code for this machine's platform (`jax.export.default_export_platform()`).
  """
  directory = Path(directory)
  program_path, metadata_path = directory / PROGRAM_FILE, directory / METADATA_FILE
  for path in (metadata_path, program_path):
    if not path.is_file():
      raise ExportedScorerError(
          f"{path} not found: {directory} is not a directory that "
          "`jaxvqa export --out DIR` wrote"
      )
  try:
    metadata = json.loads(metadata_path.read_text())
  except (OSError, ValueError) as error:
    raise ExportedScorerError(f"{metadata_path} cannot be read: {error}") from error
  if metadata.get("format") != FORMAT or metadata.get("format_version") != FORMAT_VERSION:
    raise ExportedScorerError(
        f"{metadata_path} is not a {FORMAT} version {FORMAT_VERSION} description (format "
        f"{metadata.get('format')!r}, version {metadata.get('format_version')!r}); export again "
        "with this jaxvqa"
    )
  try:
    exported = jax_export.deserialize(bytearray(program_path.read_bytes()))
  except ImportError as error:
    raise ExportedScorerError(
        f"jax reads exported programs with the flatbuffers package ({error}): "
        "pip install flatbuffers"
    ) from error
  except Exception as error:  # noqa: BLE001 — jax raises several kinds for a bad or too new blob
    raise ExportedScorerError(
        f"{program_path} cannot be deserialized by jax {jax.__version__} ({error}); it was "
        f"written with jax {metadata.get('jax_version')}: install a jax close to that one, or "
        "export again"
    ) from error
  platform = jax_export.default_export_platform()  # "cuda" where jax.default_backend() says "gpu"
  if platform not in exported.platforms:
    raise ExportedScorerError(
        f"{program_path} holds code for {list(exported.platforms)}, not for this machine's "
        f"{platform!r}; export again with `jaxvqa export --platforms {platform}`"
    )
  return ExportedScorer(exported, metadata)


def main(argv: list[str] | None = None) -> int:
  """`python score_exported.py DIR CLIPS.npy...`: one line per clip, "<file>[<i>] <score>"."""
  argv = sys.argv[1:] if argv is None else argv
  if len(argv) < 2 or argv[0] in ("-h", "--help"):
    print(
        "usage: score_exported.py DIR CLIPS.npy...\n"
        "Scores prepared clips (a .npy array [B, T, S, S, 3] or [T, S, S, 3], RGB 0-255) with "
        "the scorer that `jaxvqa export --out DIR` wrote.",
        file=sys.stderr,
    )
    return 2
  try:
    scorer = load(argv[0])
  except ExportedScorerError as error:
    print(f"score_exported: {error}", file=sys.stderr)
    return 2
  status = 0
  for name in argv[1:]:
    try:
      scores = scorer.score(np.load(name))
    except (OSError, ValueError) as error:
      print(f"score_exported: {name}: {error}", file=sys.stderr)
      status = 1
      continue
    for index, score in enumerate(scores):
      print(f"{name}[{index}] {score:.6f}")
  return status


if __name__ == "__main__":
  sys.exit(main())

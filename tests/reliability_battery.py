"""The bad inputs of issue 30 against the real CLI, each in a process of its own.

`python tests/reliability_battery.py` builds the inputs in a temporary directory (small clips, a
poisoned model) and prints, per case, the exit status and the line that names the problem: the
first stderr line after `jaxvqa score`'s announcement ("N files to score; model …"), which says
what the run will do rather than what went wrong. tests/test_reliability_battery.py runs it and
holds each case to its expected status and words; docs/RELIABILITY.md cites the cases by name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))

import media  # noqa: E402

_ANNOUNCEMENT = re.compile(r"^jaxvqa score: \d+ files to score; ")


@dataclasses.dataclass(frozen=True)
class Case:
  """One bad input: the `jaxvqa` arguments, the exit status it must give and words its problem
  line must hold (None: no line but the announcement, as for a closed pipe or a clean run)."""

  name: str
  argv: tuple[str, ...]
  status: int
  words: str | None
  stdout_closed: bool = False  # the reader of stdout went away before the first row


@dataclasses.dataclass(frozen=True)
class Outcome:
  case: Case
  status: int
  problem: str | None  # the problem line, or None

  @property
  def held(self) -> bool:
    if self.status != self.case.status:
      return False
    if self.case.words is None:
      return self.problem is None
    return self.problem is not None and self.case.words in self.problem


def _ffmpeg(*args: str | os.PathLike) -> None:
  from jaxvqa.data import ffmpeg

  ffmpeg.run_ffmpeg(["-v", "error", *map(str, args)])


def _poisoned_model(root: Path) -> Path:
  """The shipped model with one weight NaN, its digest that of the NaN weights: written so by a
  training run that went wrong, not changed afterwards."""
  from flax import serialization

  from jaxvqa.serve import inference
  from jaxvqa.train import checkpointing

  card = json.loads((inference.SHIPPED_DIR / inference.SHIPPED_CARD).read_text())
  params = serialization.msgpack_restore(
      (inference.SHIPPED_DIR / inference.SHIPPED_PARAMS).read_bytes()
  )
  holder = params  # the first weight, by sorted keys
  while isinstance(holder[sorted(holder)[0]], dict):
    holder = holder[sorted(holder)[0]]
  first = sorted(holder)[0]
  holder[first] = np.array(holder[first])
  holder[first].flat[0] = np.nan
  card[checkpointing.DIGEST_KEY] = checkpointing.weights_digest(params)
  model = root / "nan-model"
  model.mkdir()
  (model / inference.SHIPPED_CARD).write_text(json.dumps(card))
  (model / inference.SHIPPED_PARAMS).write_bytes(serialization.msgpack_serialize(params))
  return model


def build_cases(root: Path) -> list[Case]:
  """Makes the inputs under `root` (a few seconds) and returns the cases that use them."""
  clip = media.make_clip(root / "clip.mp4", size=(160, 128), frames=16)
  _ffmpeg("-i", clip, "-c", "copy", "-f", "mpegts", root / "clip.ts")
  whole = media.make_clip(root / "whole.mkv", size=(160, 128), frames=40)
  half = media.make_truncated_copy(whole, root / "half.mkv")
  lavfi = ("-f", "lavfi", "-i")
  _ffmpeg(*lavfi, "color=gray:s=160x128:r=25", "-frames:v", "16", root / "flat.mp4")
  noise = "nullsrc=s=160x128:r=25,geq=random(1)*255:128:128"
  _ffmpeg(*lavfi, noise, "-frames:v", "16", "-qp", "0", "-pix_fmt", "yuv420p", root / "noise.mp4")
  sources = root / "sources"
  sources.mkdir()
  os.link(clip, sources / "clip.mp4")
  (root / "made").write_text("a file, not a directory\n")
  nested = root / "nested"  # videos one level down, where make-dataset does not look
  (nested / "camera").mkdir(parents=True)
  os.link(clip, nested / "camera" / "clip.mp4")
  model = _poisoned_model(root)
  score = ("score", "--no-progress")
  return [
      Case("mpeg-ts", (*score, str(root / "clip.ts")), 0, None),
      Case("truncated-mkv", (*score, str(half)), 1, "decoding stopped at frame"),
      Case(
          "flat-and-noise",
          (*score, str(root / "flat.mp4"), str(root / "noise.mp4")),
          0,
          "(flat_frames 1, noise_frames 1)",
      ),
      Case("nan-checkpoint", (*score, "--workdir", str(model), str(clip)), 2, "non-finite weights"),
      Case("frames-0", (*score, "--frames", "0", str(clip)), 2, "--frames must be a positive"),
      Case(
          "display-size-too-big",
          (*score, "--display-size", "99999x99999", str(clip)),
          2,
          "--display-size '99999x99999'",
      ),
      Case("missing-input", (*score, str(root / "missing.mp4")), 2, "missing.mp4"),
      Case(
          "output-dev-full",
          (*score, "--format", "csv", "--output", "/dev/full", str(clip)),
          2,
          "cannot write --output /dev/full: no space left on device",
      ),
      Case("closed-pipe", (*score, "--format", "csv", str(clip)), 141, None, stdout_closed=True),
      Case(
          "score-beam-missing",
          ("score-beam", "--input", str(root / "missing.mp4"), "--workdir", str(model))
          + ("--output", str(root / "beam")),
          2,
          "no such file",
      ),
      Case(
          "make-dataset-out-is-a-file",
          ("make-dataset", "--sources", str(sources), "--out", str(root / "made")),
          2,
          "is a file, not a directory",
      ),
      Case(
          "make-dataset-subdirectories",
          ("make-dataset", "--sources", str(nested), "--out", str(root / "made-nested")),
          1,
          "not searching 1 subdirectory of",
      ),
  ]


def _problem_line(stderr: str) -> str | None:
  lines = [line for line in stderr.splitlines() if line.strip()]
  return next((line for line in lines if not _ANNOUNCEMENT.match(line)), None)


def run_case(case: Case) -> Outcome:
  command = [sys.executable, "-m", "jaxvqa.cli", *case.argv]
  if case.stdout_closed:
    reader, writer = os.pipe()
    os.close(reader)  # gone before the first row is written
    try:
      done = subprocess.run(
          command, cwd=REPO, stdout=writer, stderr=subprocess.PIPE, text=True, timeout=300
      )
    finally:
      os.close(writer)
  else:
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
  return Outcome(case, done.returncode, _problem_line(done.stderr))


def run_battery(root: Path) -> list[Outcome]:
  return [run_case(case) for case in build_cases(root)]


def main() -> int:
  with tempfile.TemporaryDirectory(prefix="jaxvqa-battery-") as root:
    outcomes = run_battery(Path(root))
  for outcome in outcomes:
    verdict = "ok" if outcome.held else f"EXPECTED {outcome.case.status}: {outcome.case.words}"
    print(f"{outcome.case.name:28} exit {outcome.status:3}  {outcome.problem or '-'}  [{verdict}]")
  return 0 if all(outcome.held for outcome in outcomes) else 1


if __name__ == "__main__":
  sys.exit(main())

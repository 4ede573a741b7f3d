"""jaxvqa.data.decode and jaxvqa.data.video: sampling, decoding (against ffmpeg), resizing,
fragments, errors."""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import media
from jaxvqa.data import decode, ffmpeg, ffmpeg_reader, video

# ----------------------------------------------------------------------------- sampling


def test_eval_indices_are_segment_centres():
  # N=10, T=4: segments [0,2) [2,5) [5,7) [7,10).
  np.testing.assert_array_equal(
      video.sample_frame_indices(10, 4, train=False, rng=None), [1, 3, 6, 8]
  )
  np.testing.assert_array_equal(
      video.sample_frame_indices(8, 8, train=False, rng=None), np.arange(8)
  )


def test_short_video_repeats_frames_in_order():
  np.testing.assert_array_equal(
      video.sample_frame_indices(3, 8, train=False, rng=None), [0, 0, 0, 1, 1, 1, 2, 2]
  )
  train = video.sample_frame_indices(3, 8, train=True, rng=np.random.default_rng(0))
  np.testing.assert_array_equal(train, [0, 0, 0, 1, 1, 1, 2, 2])


@settings(max_examples=200, deadline=None)
@given(
    num_frames=st.integers(1, 400),
    num_segments=st.integers(1, 32),
    seed=st.integers(0, 2**32 - 1),
    train=st.booleans(),
)
def test_sampling_invariants(num_frames, num_segments, seed, train):
  indices = video.sample_frame_indices(
      num_frames, num_segments, train=train, rng=np.random.default_rng(seed)
  )
  assert indices.shape == (num_segments,)
  assert (indices >= 0).all() and (indices < num_frames).all()
  assert (np.diff(indices) >= 0).all()
  if num_frames >= num_segments:
    # One frame from each segment [⌊iN/T⌋, ⌊(i+1)N/T⌋).
    for i, index in enumerate(indices):
      assert i * num_frames // num_segments <= index < (i + 1) * num_frames // num_segments
  else:
    # Every frame appears; repeat counts differ by at most one.
    counts = np.bincount(indices, minlength=num_frames)
    assert counts.min() >= 1 and counts.max() - counts.min() <= 1


def test_training_offsets_cover_each_segment_and_are_reproducible():
  draws = np.stack(
      [
          video.sample_frame_indices(40, 4, train=True, rng=np.random.default_rng(seed))
          for seed in range(400)
      ]
  )
  for segment in range(4):
    assert set(draws[:, segment]) == set(range(segment * 10, segment * 10 + 10))
  again = video.sample_frame_indices(40, 4, train=True, rng=np.random.default_rng(7))
  np.testing.assert_array_equal(again, draws[7])


def test_training_without_rng_is_an_error():
  with pytest.raises(ValueError, match="rng"):
    video.sample_frame_indices(10, 4, train=True, rng=None)


# ----------------------------------------------------------------------------- decoding


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
  """Small real clips with the properties under test (built once, ~2 s)."""
  root = tmp_path_factory.mktemp("clips")
  return {
      # x264 default GOP has B-frames, so frame numbers ≠ packet order.
      "h264": media.make_clip(
          root / "h264.mp4", size=(96, 64), frames=24, codec_options=["-bf", "3", "-g", "8"]
      ),
      "odd": media.make_clip(root / "odd.mkv", size=(97, 75), frames=10, codec="ffv1"),
      "grey": media.make_clip(
          root / "grey.mkv", size=(64, 48), frames=10, codec="ffv1", pix_fmt="gray"
      ),
      "10bit": media.make_clip(
          root / "tenbit.mp4", size=(96, 64), frames=10, pix_fmt="yuv420p10le"
      ),
      "hevc10": media.make_clip(
          root / "hevc10.mp4",
          size=(96, 64),
          frames=10,
          codec="libx265",
          pix_fmt="yuv420p10le",
          codec_options=["-x265-params", "log-level=error"],
      ),
      "rot90": media.make_clip(root / "rot90.mp4", size=(96, 64), frames=10, rotation=90),
      "rot270": media.make_clip(root / "rot270.mov", size=(96, 64), frames=10, rotation=270),
      "narrow": media.make_clip(root / "narrow.mp4", size=(48, 64), frames=10),
      "vp9": media.make_clip(root / "vp9.webm", size=(96, 64), frames=10, codec="libvpx-vp9"),
      "short": media.make_clip(root / "short.mp4", size=(96, 64), frames=3),
      "large": media.make_clip(root / "large.mp4", size=(320, 272), frames=8),
  }


def test_frames_are_the_frames_asked_for(clips):
  indices = [17, 0, 5, 5, 23, 9]  # any order, with a repeat
  got = decode.read_frames(clips["h264"], indices)
  assert got.dtype == np.uint8 and got.shape == (6, 64, 96, 3)
  np.testing.assert_array_equal(got, media.ffmpeg_decode_frames(clips["h264"], indices))


def test_bytes_source_equals_path_source(clips):
  data = clips["h264"].read_bytes()
  np.testing.assert_array_equal(
      decode.read_frames(data, [3, 20]), decode.read_frames(clips["h264"], [3, 20])
  )
  assert decode.probe(data) == decode.probe(clips["h264"])


@pytest.mark.parametrize(
    "name,max_mean_error",
    [("odd", 0.5), ("10bit", 0.5), ("hevc10", 0.5), ("vp9", 0.0), ("narrow", 0.0)],
)
def test_formats_decode_like_ffmpeg(clips, name, max_mean_error):
  # decord and ffmpeg's swscale round chroma of odd sizes / 10-bit slightly
  # differently; the frames must still be the same pictures.
  indices = [0, 4, 9]
  got = decode.read_frames(clips[name], indices)
  want = media.ffmpeg_decode_frames(clips[name], indices)
  assert got.dtype == np.uint8 and got.shape == want.shape
  assert np.abs(got.astype(int) - want).mean() <= max_mean_error


def test_grey_source_decodes_to_equal_rgb_channels(clips):
  got = decode.read_frames(clips["grey"], [0, 7])
  np.testing.assert_array_equal(got[..., 0], got[..., 1])
  np.testing.assert_array_equal(got[..., 0], got[..., 2])
  np.testing.assert_array_equal(got, media.ffmpeg_decode_frames(clips["grey"], [0, 7]))


@pytest.mark.parametrize("name,turns", [("rot90", 1), ("rot270", 3)])
def test_rotation_metadata_gives_display_orientation(clips, name, turns):
  got = decode.read_frames(clips[name], [2, 6])
  assert got.shape == (2, 96, 64, 3)  # 96×64 stored, shown portrait
  np.testing.assert_array_equal(got, media.ffmpeg_decode_frames(clips[name], [2, 6]))
  # Same pixels as the stored picture turned counter-clockwise `turns` times.
  stored = media.ffmpeg_decode_frames(clips["h264"], [2, 6])  # same source frames
  unrotated = np.rot90(got, -turns, axes=(1, 2))
  assert np.abs(unrotated.astype(int) - stored).mean() < 3  # different encodes


def test_probe_matches_ffmpeg(clips):
  info = decode.probe(clips["rot90"])
  assert (info.num_frames, info.width, info.height) == (10, 64, 96)
  assert info.fps == pytest.approx(25.0)
  assert info.duration == pytest.approx(0.4)
  assert decode.probe(clips["odd"]).num_frames == 10


# ----------------------------------------------------------------------------- clips


def test_short_video_clip_repeats_frames(clips):
  got = video.load_clip(clips["short"], num_frames=8, size=64)
  frames = media.ffmpeg_decode_frames(clips["short"], [0, 0, 0, 1, 1, 1, 2, 2])
  want = video.resize_short_side_center_crop(frames, 64)
  np.testing.assert_array_equal(got, want)
  assert not np.array_equal(got[0], got[7])


def test_resize_crop_matches_full_resize_then_crop(clips):
  got = video.load_clip(clips["large"], num_frames=4, size=128)
  assert got.shape == (4, 128, 128, 3) and got.dtype == np.uint8
  frames = media.ffmpeg_decode_frames(clips["large"], [1, 3, 5, 7])  # 4 segment centres
  # Reference: resize the whole 320×272 frame to 151×128, crop the centre 128.
  resized = np.stack(
      [np.asarray(Image.fromarray(f).resize((151, 128), Image.BICUBIC)) for f in frames]
  )
  left = (151 - 128) // 2
  want = resized[:, :, left : left + 128]
  assert np.abs(got.astype(int) - want).mean() < 4  # half-pixel offset of ⌊23/2⌋


def coordinate_frames(height: int, width: int, num_frames: int = 2) -> np.ndarray:
  """uint8 frames whose pixels spell their own (y, x): y = c0 + 256·(c2 // 16),
  x = c1 + 256·(c2 % 16)."""
  y, x = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
  frame = np.stack([y % 256, x % 256, (y // 256) * 16 + x // 256], -1).astype(np.uint8)
  return np.repeat(frame[None], num_frames, 0)


def decode_coordinates(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  frames = frames.astype(int)
  return (
      frames[..., 0] + 256 * (frames[..., 2] // 16),
      frames[..., 1] + 256 * (frames[..., 2] % 16),
  )


@pytest.mark.parametrize("train", [False, True])
def test_fragments_are_native_windows_inside_their_cells(train):
  height, width, grid, patch = 300, 520, 8, 32
  frames = coordinate_frames(height, width)
  rng = np.random.default_rng(3) if train else None
  out = video.extract_fragments(frames, grid=grid, patch=patch, rng=rng)
  assert out.shape == (2, 256, 256, 3)
  ys, xs = decode_coordinates(out)
  np.testing.assert_array_equal(ys[0], ys[1])  # same windows in every frame
  for i in range(grid):
    for j in range(grid):
      cell_y = ys[0, i * patch : (i + 1) * patch, j * patch : (j + 1) * patch]
      cell_x = xs[0, i * patch : (i + 1) * patch, j * patch : (j + 1) * patch]
      top, left = cell_y[0, 0], cell_x[0, 0]
      # Native pixels: a contiguous, unscaled window.
      np.testing.assert_array_equal(cell_y, top + np.arange(patch)[:, None] + 0 * cell_y)
      np.testing.assert_array_equal(cell_x, left + np.arange(patch)[None, :] + 0 * cell_x)
      y0, y1 = i * height // grid, (i + 1) * height // grid
      x0, x1 = j * width // grid, (j + 1) * width // grid
      assert y0 <= top and top + patch <= y1 and x0 <= left and left + patch <= x1
      if not train:
        assert top == y0 + (y1 - y0 - patch) // 2 and left == x0 + (x1 - x0 - patch) // 2


def test_training_fragment_positions_vary():
  frames = coordinate_frames(300, 520, num_frames=1)
  tops = {
      int(
          decode_coordinates(
              video.extract_fragments(frames, grid=8, patch=32, rng=np.random.default_rng(seed))
          )[0][0, 0, 0]
      )
      for seed in range(20)
  }
  assert len(tops) > 1 and all(0 <= top <= 37 - 32 for top in tops)


def test_load_clip_fragments_on_real_video(clips):
  got = video.load_clip(clips["large"], num_frames=4, size=128, mode="fragments", fragment_grid=8)
  frames = media.ffmpeg_decode_frames(clips["large"], [1, 3, 5, 7])
  ys = video.fragment_origins(272, 8, 16, None)
  xs = video.fragment_origins(320, 8, 16, None)
  rows = (ys[:, None] + np.arange(16)).reshape(-1)
  cols = (xs[:, None] + np.arange(16)).reshape(-1)
  np.testing.assert_array_equal(got, frames[:, rows][:, :, cols])


def test_aligned_fragment_origins_sit_on_the_block_grid_inside_their_cells():
  rng = np.random.default_rng(0)
  free = video.fragment_origins(180, 4, 32, rng, (500,))
  aligned = video.fragment_origins(180, 4, 32, np.random.default_rng(0), (500,), align=16)
  # The same draw, rounded down to the grid: never past the unaligned origin, never 16 px before.
  np.testing.assert_array_equal(aligned, free // 16 * 16)
  assert (aligned % 16 == 0).all() and (aligned >= 0).all() and (aligned + 32 <= 180).all()
  centred = video.fragment_origins(320, 4, 32, None, align=16)
  np.testing.assert_array_equal(centred, [16, 96, 176, 256])  # cell centres 24, 104, 184, 264
  with pytest.raises(ValueError, match="alignment must be >= 1"):
    video.fragment_origins(320, 4, 32, None, align=0)


def test_load_clip_cuts_aligned_fragments_where_the_scorer_asks(clips):
  got = video.load_clip(
      clips["large"], num_frames=4, size=128, mode="fragments", fragment_grid=4, fragment_align=16
  )
  frames = media.ffmpeg_decode_frames(clips["large"], [1, 3, 5, 7])
  ys = video.fragment_origins(272, 4, 32, None, align=16)
  xs = video.fragment_origins(320, 4, 32, None, align=16)
  assert (ys % 16 == 0).all() and (xs % 16 == 0).all()
  rows = (ys[:, None] + np.arange(32)).reshape(-1)
  cols = (xs[:, None] + np.arange(32)).reshape(-1)
  np.testing.assert_array_equal(got, frames[:, rows][:, :, cols])


def test_fragments_upscale_small_video(clips):
  got = video.load_clip(clips["odd"], num_frames=2, size=128, mode="fragments")
  assert got.shape == (2, 128, 128, 3)
  with pytest.raises(ValueError, match="divisible"):
    video.load_clip(clips["odd"], num_frames=2, size=100, mode="fragments")


def test_training_flip_is_horizontal_mirror_of_eval(clips):
  # 24 frames, T=24: training and evaluation pick the same frames, so the
  # training clip is the eval clip or its mirror.
  evaluation = video.load_clip(clips["h264"], num_frames=24, size=64)
  flips = []
  for seed in range(8):
    clip = video.load_clip(
        clips["h264"], num_frames=24, size=64, train=True, rng=np.random.default_rng(seed)
    )
    if np.array_equal(clip, evaluation):
      flips.append(False)
    else:
      np.testing.assert_array_equal(clip, evaluation[:, :, ::-1])
      flips.append(True)
  assert any(flips) and not all(flips)
  no_flip = video.load_clip(
      clips["h264"], num_frames=24, size=64, train=True, hflip=False, rng=np.random.default_rng(1)
  )
  np.testing.assert_array_equal(no_flip, evaluation)


# ----------------------------------------------------------------------------- errors


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, clips):
  root = tmp_path_factory.mktemp("bad")
  faststart = media.make_clip(
      root / "faststart.mp4", size=(96, 64), frames=40, codec_options=["-movflags", "+faststart"]
  )
  return {
      "zero bytes": media.make_empty_file(root / "empty.mp4"),
      "not found": root / "missing.mp4",
      "not a video": media.make_not_a_video(root / "notes.mp4"),
      "truncated index": media.make_truncated_copy(clips["h264"], root / "cut.mp4"),
      "truncated frames": media.make_truncated_copy(faststart, root / "cut_fast.mp4", 0.4),
      # A FourCC neither decord nor the bundled ffmpeg decodes (VVC, once used here, now
      # decodes through the ffmpeg fallback: see test_ffmpeg_fallback_reads_every_codec).
      "unknown codec": media.make_unknown_codec_clip(root / "unknown.avi", frames=2),
  }


@pytest.mark.parametrize(
    "kind,reason",
    [
        ("zero bytes", "0 bytes"),
        ("not found", "not found"),
        ("not a video", "not a video"),
        ("truncated index", "truncated"),
        ("truncated frames", "truncated"),
        ("unknown codec", "unknown codec"),
    ],
)
def test_bad_files_raise_video_decode_error_naming_file(bad_files, kind, reason):
  path = bad_files[kind]
  with pytest.raises(decode.VideoDecodeError) as caught:
    video.load_clip(path, num_frames=40, size=32)
  assert str(path) in str(caught.value) and reason in str(caught.value)


def test_bad_bytes_raise_video_decode_error():
  with pytest.raises(decode.VideoDecodeError, match="0 bytes"):
    decode.read_frames(b"", [0])
  with pytest.raises(decode.VideoDecodeError, match="<12 bytes in memory>"):
    decode.read_frames(b"not a video!", [0])


def test_index_outside_video_names_file(clips):
  with pytest.raises(IndexError, match="short.mp4.*3 frames"):
    decode.read_frames(clips["short"], [0, 3])


# ----------------------------------------------------------------------------- ffmpeg fallback


@pytest.fixture(scope="module")
def codec_clips(tmp_path_factory):
  """64×48, 8-frame clips in every codec `make-dataset` offers, 10-bit and rotated (~1.5 s)."""
  root = tmp_path_factory.mktemp("codecs")
  x265_quiet = ["-x265-params", "log-level=error"]
  return {
      "av1": media.make_clip(root / "av1.mkv", codec="libsvtav1", frames=8),
      "av1_rot90": media.make_clip(
          root / "av1_rot90.mp4", codec="libsvtav1", frames=8, rotation=90
      ),
      "av1_10bit_rot270": media.make_clip(
          root / "av1_10bit.mp4", codec="libsvtav1", frames=8, pix_fmt="yuv420p10le", rotation=270
      ),
      "vvc": media.make_clip(
          root / "vvc.mp4", codec="libvvenc", frames=8, codec_options=["-preset", "faster"]
      ),
      "vp9": media.make_clip(root / "vp9.webm", codec="libvpx-vp9", frames=8),
      "hevc10": media.make_clip(
          root / "hevc10.mkv",
          codec="libx265",
          frames=8,
          pix_fmt="yuv420p10le",
          codec_options=x265_quiet,
      ),
      "h264_rot90": media.make_clip(root / "h264_rot90.mp4", frames=8, rotation=90),
  }


# name: (the reader `open_reader` picks, display (height, width), largest mean |difference| of
# the frames it reads from ffmpeg's own rgb24 decode). decord converts 10-bit to RGB with its own
# rounding (differences of a few levels on a few pixels); the ffmpeg fallback is ffmpeg itself.
CODEC_CASES = {
    "av1": ("FfmpegReader", (48, 64), 0.0),
    "av1_rot90": ("FfmpegReader", (64, 48), 0.0),
    "av1_10bit_rot270": ("FfmpegReader", (64, 48), 0.0),
    "vvc": ("FfmpegReader", (48, 64), 0.0),
    "vp9": ("VideoReader", (48, 64), 0.0),
    "hevc10": ("VideoReader", (48, 64), 0.5),
    "h264_rot90": ("VideoReader", (64, 48), 0.0),
}


@pytest.mark.parametrize("name", list(CODEC_CASES))
def test_every_codec_reads_in_display_orientation_like_ffmpeg(codec_clips, name):
  reader_kind, display, max_mean_error = CODEC_CASES[name]
  path = codec_clips[name]
  indices = [7, 0, 3, 3]
  want = media.ffmpeg_decode_frames(path, indices)
  assert want.shape == (4, *display, 3)
  # Whichever decoder `open_reader` picks (decord stays the fast path where it can) ...
  assert type(decode.open_reader(path)).__name__ == reader_kind
  got = decode.read_frames(path, indices)
  assert got.dtype == np.uint8 and got.shape == want.shape
  assert np.abs(got.astype(int) - want).mean() <= max_mean_error
  # ... and the ffmpeg reader on any codec: every frame, the same pixels as ffmpeg's decode.
  reader = ffmpeg_reader.FfmpegReader(path)
  assert len(reader) == media.count_decoded_frames(path) == 8
  np.testing.assert_array_equal(decode.read_from_reader(reader, indices, str(path)), want)
  np.testing.assert_array_equal(reader[3], want[2])


def test_probe_and_timestamps_of_a_rotated_ten_bit_av1_clip(codec_clips):
  path = codec_clips["av1_10bit_rot270"]
  pts, (numerator, denominator) = media.presentation_timestamps(path)
  duration = (pts[-1] + pts[1] - pts[0]) * numerator / denominator  # constant rate: one more step
  info = decode.probe(path)
  assert info == decode.VideoInfo(
      num_frames=len(pts),
      fps=pytest.approx(25.0),
      width=48,
      height=64,
      duration=pytest.approx(duration),
  )
  starts = decode.frame_start_seconds(decode.open_reader(path))
  np.testing.assert_allclose(
      starts[:-1], (np.array(pts) - pts[0]) * numerator / denominator, atol=1e-6
  )
  assert starts[-1] == pytest.approx(duration)


def test_ffmpeg_reader_keeps_variable_frame_rate_timestamps(tmp_path):
  path = media.make_vfr_clip(tmp_path / "vfr.mkv", rates=(30.0, 8.0), frames_per_rate=4)
  pts, (numerator, denominator) = media.presentation_timestamps(path)
  reader = ffmpeg_reader.FfmpegReader(path)
  starts = decode.frame_start_seconds(reader)
  np.testing.assert_allclose(
      starts[:-1], (np.array(pts) - pts[0]) * numerator / denominator, atol=1e-6
  )
  assert starts[-1] > starts[-2]
  # The mean rate over the stream's time, not the first rate nor the container's nominal one.
  assert reader.get_avg_fps() == pytest.approx(len(pts) / starts[-1])


def test_av1_bytes_read_like_the_file_and_leave_no_temporary_file(
    codec_clips, tmp_path, monkeypatch
):
  monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
  path = codec_clips["av1_rot90"]
  data = path.read_bytes()
  np.testing.assert_array_equal(decode.read_frames(data, [1, 6]), decode.read_frames(path, [1, 6]))
  assert decode.probe(data) == decode.probe(path)
  clip = video.load_clip(data, num_frames=4, size=32)
  np.testing.assert_array_equal(clip, video.load_clip(path, num_frames=4, size=32))
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "kind,decord_says,ffmpeg_says",
    [
        ("unknown codec", "unknown codec", "no decoder found"),
        ("audio only", "no video stream decord can decode", "no video stream"),
    ],
)
def test_when_both_decoders_fail_the_error_gives_both_reasons(
    tmp_path, kind, decord_says, ffmpeg_says
):
  path = (
      media.make_unknown_codec_clip(tmp_path / "camera.avi")
      if kind == "unknown codec"
      else media.make_audio_only(tmp_path / "voice.mp4")
  )
  with pytest.raises(decode.VideoDecodeError) as caught:
    decode.read_frames(path, [0])
  message = str(caught.value)
  decord_part, _, ffmpeg_part = message.partition("; the bundled ffmpeg could not read it either: ")
  assert decord_part.startswith(f"{path}: ") and decord_says in decord_part
  assert ffmpeg_says in ffmpeg_part, message


def test_av1_without_imageio_ffmpeg_says_what_to_install(codec_clips, monkeypatch):
  # Inference machines may carry decord but not imageio-ffmpeg (see test_scoring's import test).
  def missing():
    raise ImportError("No module named 'imageio_ffmpeg'")

  monkeypatch.setattr(ffmpeg, "ffmpeg_exe", missing)
  with pytest.raises(
      decode.VideoDecodeError,
      match=r"no video stream decord can decode .*"
      r"could not read it either: imageio-ffmpeg is not installed .*pip install",
  ):
    decode.read_frames(codec_clips["av1"], [0])


def test_score_reads_av1_clips_even_with_names_that_are_not_utf8(
    trained_workdir, codec_clips, tmp_path
):
  from jaxvqa import scoring
  from jaxvqa.serve import inference

  odd_name = os.path.join(os.fsencode(tmp_path), b"av1-\xff.mkv")
  shutil.copyfile(codec_clips["av1"], odd_name)
  paths = [str(codec_clips["av1_10bit_rot270"]), os.fsdecode(odd_name)]
  trained = inference.load_trained_model(trained_workdir)
  clip_length = trained.frames.num_frames
  sampling = scoring.Sampling(clip_length=clip_length, frames=clip_length, segments=2)
  scores, failures = scoring.score_videos(paths, trained, sampling=sampling, workers=1)
  assert failures == []
  # Each score is the model's score of ffmpeg's own decode of the frames evaluation samples.
  options = trained.frames
  for score, path in zip(scores, [codec_clips["av1_10bit_rot270"], codec_clips["av1"]]):
    indices = video.sample_frame_indices(8, options.num_frames, train=False, rng=None)
    clip = video.prepare_frames(
        media.ffmpeg_decode_frames(path, indices),
        options.size,
        mode=options.mode,
        fragment_grid=options.fragment_grid,
    )
    want = trained.calibrate(trained.raw_scores(clip[None]))[0]
    assert score.num_frames == 8 and score.fps == pytest.approx(25.0)
    assert score.score == pytest.approx(want, abs=1e-6)
    assert [segment.start_seconds for segment in score.segments] == pytest.approx([0.0, 0.16])

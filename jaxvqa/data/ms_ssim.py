"""MS-SSIM, the full-reference score that labels `make-iqa-set`'s distorted photos.

Multi-scale structural similarity as defined by Wang, Simoncelli and Bovik, "Multi-scale
structural similarity for image quality assessment" (Asilomar 2003): at each of 5 scales the
SSIM contrast-structure term is averaged over the image, the luminance term only at the coarsest,
and the five are combined as a weighted product with the paper's weights. Between scales the
image is low-passed by 2×2 averaging and subsampled by 2.

Choices that follow the common reference implementations (the paper's MATLAB code and
`pytorch-msssim`, which tests/test_iqa_set.py compares against):
  - an 11-tap Gaussian window (σ = 1.5), separable, applied over the "valid" region only, so no
    border is invented;
  - K1 = 0.01, K2 = 0.03, on the 0–255 range of uint8 images;
  - negative terms are clipped to 0 before the fractional powers (which would be NaN otherwise);
  - colour images are scored per channel (R, G, B) and the channels averaged, so a change of
    colour alone (saturation, chroma noise) lowers the score, which a luma-only score would miss.
An odd side is padded by repeating its last row or column before the 2×2 averaging (the MATLAB
code's symmetric filter does the same); `pytorch-msssim` pads with zeros there instead, so the two
agree exactly only where every scale has even sides (sides that are multiples of 16).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
K1, K2 = 0.01, 0.03
DATA_RANGE = 255.0
# The coarsest of the 5 scales is 1/16 of the image and must still hold one whole window.
MIN_SIDE = (WINDOW_SIZE - 1) * 2 ** (len(WEIGHTS) - 1) + 1


def _gaussian_window() -> np.ndarray:
  offsets = np.arange(WINDOW_SIZE, dtype=np.float64) - WINDOW_SIZE // 2
  window = np.exp(-(offsets**2) / (2 * WINDOW_SIGMA**2))
  return window / window.sum()


def _filter_valid(planes: np.ndarray, window: np.ndarray) -> np.ndarray:
  """The separable window over [H, W, ...] at the positions where it lies wholly inside H × W."""
  margin = len(window) // 2
  filtered = ndimage.correlate1d(planes, window, axis=0, mode="constant")
  filtered = ndimage.correlate1d(filtered, window, axis=1, mode="constant")
  return filtered[margin:-margin, margin:-margin]


def _halve(image: np.ndarray) -> np.ndarray:
  """2×2 average then subsample by 2 of [H, W, C]; an odd side repeats its last row / column."""
  height, width = image.shape[:2]
  image = np.pad(image, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
  return 0.25 * (image[0::2, 0::2] + image[1::2, 0::2] + image[0::2, 1::2] + image[1::2, 1::2])


class ReferenceScorer:
  """MS-SSIM of many images against one reference [H, W, C]: the reference's pyramid and local
  statistics are computed once (a set scores ~130 images per reference).

  Values are shifted by -128 and kept in float32: variances are differences of local means of
  squares, and centring the values keeps those squares small enough for float32 to hold the
  differences to ~1e-3 of C2, so the score agrees with a float64 computation to ~1e-6.
  """

  def __init__(self, reference: np.ndarray):
    reference = np.asarray(reference)
    if reference.ndim == 2:
      reference = reference[..., None]
    if min(reference.shape[:2]) < MIN_SIDE:
      raise ValueError(
          f"ms_ssim: image {reference.shape[1]}×{reference.shape[0]} is too small for 5 scales; "
          f"both sides must be at least {MIN_SIDE} pixels"
      )
    self._window = _gaussian_window().astype(np.float32)
    self._scales = []  # per scale: (x, mu_x, mean of x², contiguous [H, W, C] float32)
    x = np.asarray(reference, np.float32) - 128.0
    for scale in range(len(WEIGHTS)):
      mu_x, mean_xx = np.split(
          _filter_valid(np.concatenate([x, x * x], axis=2), self._window), 2, 2
      )
      self._scales.append((x, mu_x, mean_xx))
      if scale < len(WEIGHTS) - 1:
        x = _halve(x)

  def per_channel(self, distorted: np.ndarray) -> np.ndarray:
    """float64 [C]: MS-SSIM of each channel of `distorted` (same shape as the reference)."""
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    y = np.asarray(distorted, np.float32) - 128.0
    terms = []
    for scale, (x, mu_x, mean_xx) in enumerate(self._scales):
      moments = _filter_valid(np.concatenate([y, y * y, x * y], axis=2), self._window)
      mu_y, mean_yy, mean_xy = np.split(moments, 3, axis=2)
      var_x, var_y = mean_xx - mu_x**2, mean_yy - mu_y**2
      contrast_structure = (2 * (mean_xy - mu_x * mu_y) + c2) / (var_x + var_y + c2)
      if scale < len(WEIGHTS) - 1:
        terms.append(contrast_structure.mean(axis=(0, 1), dtype=np.float64))
        y = _halve(y)
      else:
        # The luminance term compares means on the 0–255 scale, so the shift is undone.
        mean_x, mean_y = mu_x + 128.0, mu_y + 128.0
        luminance = (2 * mean_x * mean_y + c1) / (mean_x**2 + mean_y**2 + c1)
        terms.append((luminance * contrast_structure).mean(axis=(0, 1), dtype=np.float64))
    clipped = np.maximum(np.stack(terms), 0.0)  # [scales, C]
    return np.prod(clipped ** np.asarray(WEIGHTS)[:, None], axis=0)

  def __call__(self, distorted: np.ndarray) -> float:
    """MS-SSIM of `distorted` against the reference, mean over channels."""
    distorted = np.asarray(distorted)
    if distorted.ndim == 2:
      distorted = distorted[..., None]
    reference_shape = self._scales[0][0].shape
    if distorted.shape != reference_shape:
      raise ValueError(f"ms_ssim: shapes differ, {reference_shape} and {distorted.shape}")
    return float(np.mean(self.per_channel(distorted)))


def ms_ssim(reference: np.ndarray, distorted: np.ndarray) -> float:
  """MS-SSIM of two uint8 images [H, W] or [H, W, C], mean over channels; in [0, 1].

  Both sides must be at least MIN_SIDE (161) pixels, so the coarsest scale holds a window.
  """
  return ReferenceScorer(reference)(distorted)

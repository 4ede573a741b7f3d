"""Generated textures: dead leaves (occluding moving shapes), 1/f^alpha noise, fractal zooms."""

from __future__ import annotations

import math

import numpy as np

from jaxvqa.data.corpus.drawing import clip_fields, gradient_image, random_colour


def render_deadleaves(row: dict, rng: np.random.Generator) -> np.ndarray:
  params, width, height, num_frames = clip_fields(row)
  scale = min(width, height) / 216  # radii are given for a 216-line frame
  r_min, r_max = (r * scale for r in params["radius"])
  # Radii ~ r^-3 between r_min and r_max (scale-invariant dead leaves), by inverse CDF.
  u = rng.uniform(size=params["leaves"])
  radii = (r_min**-2 - u * (r_min**-2 - r_max**-2)) ** -0.5
  margin = r_max
  positions = rng.uniform(
      [-margin, -margin], [width + margin, height + margin], size=(params["leaves"], 2)
  )
  velocities = rng.normal(0, params["speed"], size=(params["leaves"], 2)) + rng.normal(
      0, params["speed"] / 2, size=2
  )
  shapes = rng.choice(["disc", "square", "polygon"], size=params["leaves"])
  fills = rng.choice(params["fills"], size=params["leaves"])
  colours = [
      np.array(random_colour(rng, params["saturation"]), np.float32)
      for _ in range(params["leaves"])
  ]
  seconds = [
      np.array(random_colour(rng, params["saturation"]), np.float32)
      for _ in range(params["leaves"])
  ]
  angles = rng.uniform(0, 2 * math.pi, size=params["leaves"])
  spins = rng.normal(0, 0.02 * (params["speed"] > 0), size=params["leaves"])
  periods = rng.uniform(2, 20, size=params["leaves"])
  noise_tile = rng.normal(0, 1, size=(64, 64)).astype(np.float32)
  polygon_sides = rng.integers(3, 8, size=params["leaves"])
  background = gradient_image(rng, width, height)
  out = np.empty((num_frames, height, width, 3), np.uint8)
  for t in range(num_frames):
    frame = background.copy()
    for leaf in range(params["leaves"]):
      cx, cy = positions[leaf] + velocities[leaf] * t
      r = radii[leaf]
      x_lo, x_hi = max(int(cx - r), 0), min(int(cx + r) + 2, width)
      y_lo, y_hi = max(int(cy - r), 0), min(int(cy + r) + 2, height)
      if x_lo >= x_hi or y_lo >= y_hi:
        continue
      dy, dx = np.mgrid[y_lo:y_hi, x_lo:x_hi].astype(np.float32)
      dx -= cx
      dy -= cy
      angle = angles[leaf] + spins[leaf] * t
      u_ = dx * math.cos(angle) + dy * math.sin(angle)
      v_ = -dx * math.sin(angle) + dy * math.cos(angle)
      if shapes[leaf] == "disc":
        mask = u_ * u_ + v_ * v_ <= r * r
      elif shapes[leaf] == "square":
        mask = (np.abs(u_) <= r * 0.8) & (np.abs(v_) <= r * 0.8)
      else:
        sides = polygon_sides[leaf]
        theta = np.arctan2(v_, u_)
        sector = math.pi / sides
        apothem = r * math.cos(sector)
        local = np.mod(theta, 2 * sector) - sector
        mask = np.hypot(u_, v_) * np.cos(local) <= apothem
      if not mask.any():
        continue
      fill = fills[leaf]
      if fill == "flat":
        patch = colours[leaf]
      else:
        if fill == "stripes":
          mix = 0.5 + 0.5 * np.sin(2 * math.pi * u_ / periods[leaf])
        elif fill == "gradient":
          mix = np.clip(0.5 + v_ / (2 * r), 0, 1)
        else:
          mix = np.clip(
              0.5 + 0.25 * noise_tile[np.mod(v_.astype(int), 64), np.mod(u_.astype(int), 64)], 0, 1
          )
        patch = (colours[leaf] + (seconds[leaf] - colours[leaf]) * mix[..., None])[mask]
      region = frame[y_lo:y_hi, x_lo:x_hi]
      region[mask] = patch
    if params["blur_edges"]:
      frame = (
          frame + np.roll(frame, 1, 0) + np.roll(frame, 1, 1) + np.roll(frame, (1, 1), (0, 1))
      ) / 4
    out[t] = np.clip(frame, 0, 255).astype(np.uint8)
  return out


def render_noise(row: dict, rng: np.random.Generator) -> np.ndarray:
  params, width, height, num_frames = clip_fields(row)
  ky = np.fft.fftfreq(height)[:, None]
  kx = np.fft.rfftfreq(width)[None, :]
  frequency = np.hypot(kx, ky)
  amplitude = (frequency**2 + (1.0 / max(width, height)) ** 2) ** (-params["alpha"] / 2)
  amplitude[0, 0] = 0.0
  channels = 1 if params["colour"] == "grey" else 3
  shape = (channels,) + amplitude.shape
  first = rng.normal(size=shape) + 1j * rng.normal(size=shape)
  second = rng.normal(size=shape) + 1j * rng.normal(size=shape)
  vx, vy = params["drift"]
  mixing = rng.normal(0, 1, size=(3, 3)) + 2 * np.eye(3)
  mixing /= np.linalg.norm(mixing, axis=1, keepdims=True)
  base = rng.uniform(60, 196, size=3)
  palette = [np.array(random_colour(rng), np.float32) for _ in range(3)]
  out = np.empty((num_frames, height, width, 3), np.uint8)
  for t in range(num_frames):
    phase = params["evolution"] * t
    coefficients = (math.cos(phase) * first + math.sin(phase) * second) * amplitude
    coefficients = coefficients * np.exp(-2j * math.pi * (kx * vx + ky * vy) * t)
    field = np.fft.irfft2(coefficients, s=(height, width), axes=(-2, -1))
    field /= field.std(axis=(-2, -1), keepdims=True) + 1e-9
    contrast = 64 * params["contrast"]
    if params["colour"] == "grey":
      image = np.repeat(base.mean() + contrast * field[0][..., None], 3, axis=-1)
    elif params["colour"] == "mixed":
      image = base + contrast * np.einsum("chw,dc->hwd", field, mixing)
    else:  # palette: the first field picks between colours, the others add texture
      mix = np.clip(0.5 + 0.3 * field[0], 0, 1)[..., None]
      image = palette[0] + (palette[1] - palette[0]) * mix + 0.2 * contrast * field[1][..., None]
    out[t] = np.clip(image, 0, 255).astype(np.uint8)
  return out


# Points near the Mandelbrot set's boundary where a zoom stays detailed.
MANDELBROT_POINTS = (
    (-0.743643887, 0.131825904),
    (-0.7453, 0.1127),
    (0.25498704, -0.00056798),
    (-1.25066, 0.02012),
    (-0.16070135, 1.0375665),
    (-0.77568377, 0.13646737),
    (-1.7497, 0.0),
    (0.001643721971153, 0.822467633298876),
    (-0.10109636, 0.95628651),
    (0.3750001200618655, -0.2166393884377127),
)
JULIA_CENTRES = (
    (-0.8, 0.156),
    (-0.4, 0.6),
    (0.285, 0.01),
    (-0.70176, -0.3842),
    (-0.835, -0.2321),
    (0.355, 0.355),
    (-0.54, 0.54),
    (0.37, 0.1),
)


def _escape_counts(z: np.ndarray, c: np.ndarray | complex, max_iterations: int) -> np.ndarray:
  """Smooth escape-time counts (float32 [H, W]; max_iterations where it never escaped).

  float32 real and imaginary parts, and only points still inside are iterated,
  so escaped regions cost nothing. Escapes are checked every third iteration:
  from |z| ≤ 16, three more steps stay below float32's overflow, and the smooth
  count below does not depend on the step it is read at.
  """
  shape = z.shape
  real = np.ascontiguousarray(z.real, np.float32).ravel()
  imag = np.ascontiguousarray(z.imag, np.float32).ravel()
  c_real = np.broadcast_to(np.real(c), shape).astype(np.float32).ravel()
  c_imag = np.broadcast_to(np.imag(c), shape).astype(np.float32).ravel()
  result = np.full(real.size, float(max_iterations), np.float32)
  alive = np.arange(real.size)
  for iteration in range(max_iterations):
    real, imag = real * real - imag * imag + c_real, 2 * real * imag + c_imag
    if iteration % 3 != 2 and iteration != max_iterations - 1:
      continue
    magnitude = real * real + imag * imag
    escaped = magnitude > 256.0
    if escaped.any():
      # Fractional count: removes the colour bands of integer escape times.
      log_modulus = np.log(magnitude[escaped]) / 2
      result[alive[escaped]] = iteration + 1 - np.log2(np.maximum(log_modulus, 1e-9) / math.log(2))
      keep = ~escaped
      real, imag, c_real, c_imag, alive = (
          real[keep],
          imag[keep],
          c_real[keep],
          c_imag[keep],
          alive[keep],
      )
      if not alive.size:
        break
  return result.reshape(shape)


def render_fractal(row: dict, rng: np.random.Generator) -> np.ndarray:
  params, width, height, num_frames = clip_fields(row)
  # Cosine palette (a + b cos 2π(c s + d)): smooth, cycling, any hue set.
  a, b = rng.uniform(0.3, 0.7, 3), rng.uniform(0.2, 0.5, 3)
  c, d = rng.uniform(0.5, 2.0, 3), rng.uniform(0, 1, 3)
  density = rng.uniform(0.02, 0.1)
  if params["set"] == "mandelbrot":
    centre = complex(*MANDELBROT_POINTS[rng.integers(len(MANDELBROT_POINTS))])
    span = 3.0 / rng.uniform(1, 300)
  else:
    centre = complex(*rng.normal(0, 0.3, 2) * [1, 0.6])
    span = rng.uniform(1.2, 3.5)
    julia = complex(*JULIA_CENTRES[rng.integers(len(JULIA_CENTRES))])
    orbit = rng.uniform(0.002, 0.02) * (params["zoom_per_frame"] > 1 or rng.random() < 0.7)
    orbit_phase = rng.uniform(0, 2 * math.pi)
  rotation = rng.uniform(0, 2 * math.pi)
  grid = (np.arange(width) - width / 2 + 0.5)[None, :] + 1j * (
      np.arange(height) - height / 2 + 0.5
  )[:, None]
  grid = grid * np.exp(1j * rotation) / width
  out = np.empty((num_frames, height, width, 3), np.uint8)
  for t in range(num_frames):
    plane = centre + grid * span / params["zoom_per_frame"] ** t
    if params["set"] == "mandelbrot":
      counts = _escape_counts(np.zeros_like(plane), plane, params["max_iterations"])
    else:
      c_t = julia + orbit * np.exp(1j * (orbit_phase + 0.3 * t))
      counts = _escape_counts(plane, c_t, params["max_iterations"])
    s = counts * density + params["palette_speed"] * t
    colour = a + b * np.cos(2 * math.pi * (c * s[..., None] + d))
    colour[counts >= params["max_iterations"]] = 0.0  # the set itself is black
    out[t] = np.clip(colour * 255, 0, 255).astype(np.uint8)
  return out

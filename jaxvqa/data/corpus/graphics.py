"""Generated graphics: scrolling text, pages, UI panels, charts, line art, and moving scenes."""

from __future__ import annotations

import math

import numpy as np

from jaxvqa.data.corpus.drawing import (
    clip_fields,
    gradient_image,
    load_font,
    random_colour,
    text_line,
)


def render_text(row: dict, rng: np.random.Generator) -> np.ndarray:
  from PIL import Image, ImageDraw

  params, width, height, num_frames = clip_fields(row)
  size = max(6, int(params["font_size"] * height / 216))
  font = load_font(params["font"], size)
  dark = params["dark"]
  background = random_colour(rng, value=(0.05, 0.25) if dark else (0.8, 1.0), saturation=0.3)
  ink = random_colour(rng, value=(0.85, 1.0) if dark else (0.0, 0.3), saturation=0.5)
  speed = params["speed"]
  layout = params["layout"]
  frames = np.empty((num_frames, height, width, 3), np.uint8)
  if layout in ("ticker", "page"):
    # Drawn once on a canvas larger than the frame, then scrolled.
    travel = int(math.ceil(speed * num_frames)) + 1
    if layout == "ticker":
      canvas = Image.new("RGB", (width + travel, height), background)
      draw = ImageDraw.Draw(canvas)
      y = 0
      while y < height:
        band = int(rng.integers(size, 3 * size))
        colour = random_colour(rng, value=(0.0, 1.0))
        draw.rectangle([0, y, canvas.width, y + band], fill=colour)
        line_font = load_font(params["font"], max(6, int(band * rng.uniform(0.4, 0.8))))
        text_colour = (255, 255, 255) if sum(colour) < 380 else (0, 0, 0)
        draw.text(
            (int(rng.integers(0, 20)), y + band // 8),
            text_line(rng, 6 + canvas.width // max(size, 6)),
            font=line_font,
            fill=text_colour,
        )
        y += band + int(rng.integers(0, size))
      band_speeds = rng.uniform(0.3, 1.0)
      for t in range(num_frames):
        offset = int(round(speed * band_speeds * t))
        frames[t] = np.asarray(canvas)[:, offset : offset + width]
    else:
      canvas = Image.new("RGB", (width, height + travel), background)
      draw = ImageDraw.Draw(canvas)
      y = int(rng.integers(0, size))
      margin = int(rng.integers(2, max(3, width // 8)))
      while y < canvas.height:
        if rng.random() < 0.15:  # heading
          heading = load_font(params["font"], int(size * 1.6))
          draw.text((margin, y), text_line(rng, 3), font=heading, fill=ink)
          y += int(size * 2.2)
        chars = max(4, (width - 2 * margin) // max(size // 2, 3))
        line = text_line(rng, chars // 5 + 1)[:chars]
        draw.text((margin, y), line, font=font, fill=ink)
        y += int(size * rng.uniform(1.1, 1.6))
      for t in range(num_frames):
        offset = int(round(speed * t))
        frames[t] = np.asarray(canvas)[offset : offset + height]
    return frames
  # Per-frame drawings: cheap at these sizes.
  if layout == "ui":
    panels = [
        (
            int(rng.integers(0, width * 3 // 4)),
            int(rng.integers(0, height * 3 // 4)),
            int(rng.integers(width // 4, width)),
            int(rng.integers(height // 4, height)),
            random_colour(rng, value=(0.6, 1.0), saturation=0.2),
            random_colour(rng, saturation=0.7),
            [text_line(rng, 4) for _ in range(12)],
        )
        for _ in range(int(rng.integers(2, 6)))
    ]
    velocity = rng.normal(0, speed, 2)
    cursor = rng.uniform([0, 0], [width, height])
    cursor_velocity = rng.normal(0, speed + 1, 2)
    for t in range(num_frames):
      image = Image.new("RGB", (width, height), background)
      draw = ImageDraw.Draw(image)
      for number, (x, y, w, h, face, title, lines) in enumerate(panels):
        if number == len(panels) - 1:  # the front window is dragged
          x, y = int(x + velocity[0] * t), int(y + velocity[1] * t)
        draw.rectangle([x, y, x + w, y + h], fill=face, outline=(40, 40, 40))
        draw.rectangle([x, y, x + w, y + size + 4], fill=title)
        draw.text((x + 4, y + 2), lines[0], font=font, fill=(255, 255, 255))
        for line_number, line in enumerate(lines[1:]):
          line_y = y + (line_number + 1) * (size + 6) + 4
          if line_y + size > y + h:
            break
          if line_number % 4 == 3:  # a button
            draw.rounded_rectangle(
                [x + 6, line_y, x + 6 + size * 4, line_y + size + 2], radius=3, fill=title
            )
          draw.text((x + 8, line_y), line, font=font, fill=(20, 20, 20))
      px, py = cursor + cursor_velocity * t
      draw.polygon(
          [(px, py), (px, py + 14), (px + 4, py + 10), (px + 10, py + 10)],
          fill=(0, 0, 0),
          outline=(255, 255, 255),
      )
      frames[t] = np.asarray(image)
    return frames
  if layout == "chart":
    series = np.cumsum(rng.normal(0, 1, size=(int(rng.integers(1, 4)), 400)), axis=1)
    bars = rng.uniform(0.1, 1, size=int(rng.integers(3, 12)))
    bar_rates = rng.normal(0, 0.03, size=bars.size)
    colours = [random_colour(rng, saturation=0.8, value=(0.4, 0.9)) for _ in range(8)]
    captions = [text_line(rng, 5) for _ in range(num_frames // 12 + 1)]
    for t in range(num_frames):
      image = Image.new("RGB", (width, height), background)
      draw = ImageDraw.Draw(image)
      left, bottom = int(size * 2.5), height - size - 6
      for gy in np.linspace(4, bottom, 6):
        draw.line([left, gy, width, gy], fill=(128, 128, 128))
        draw.text((2, gy - size / 2), f"{(bottom - gy) / bottom * 100:.0f}", font=font, fill=ink)
      split = left + (width - left) // 2 if bars.size > 5 else width
      start = int(speed * t) % 200
      for k, line in enumerate(series):
        window = line[start : start + 100]
        low, high = window.min(), window.max()
        xs = np.linspace(left, split - 4, window.size)
        ys = bottom - (window - low) / max(high - low, 1e-6) * (bottom - 8)
        draw.line(list(zip(xs.tolist(), ys.tolist())), fill=colours[k], width=1 + k % 2)
      if split < width:
        heights = np.clip(bars + bar_rates * t * (speed > 0), 0.05, 1)
        bar_w = (width - split) / bars.size
        for k, value in enumerate(heights):
          x = split + k * bar_w
          draw.rectangle(
              [x + 1, bottom - value * (bottom - 8), x + bar_w - 2, bottom],
              fill=colours[k % len(colours)],
          )
      draw.text((left, bottom + 2), captions[t // 12], font=font, fill=ink)
      frames[t] = np.asarray(image)
    return frames
  # lineart: strokes and curves turning about a point.
  count = int(rng.integers(20, 120))
  points = rng.uniform(-1, 1, size=(count, 4, 2)) * [width, height]
  widths = rng.integers(1, 4, size=count)
  colours = [random_colour(rng, value=(0.0, 0.5) if not dark else (0.6, 1.0)) for _ in range(count)]
  spin = speed * 0.004
  centre = np.array([width / 2, height / 2])
  for t in range(num_frames):
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    angle = spin * t
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    for k in range(count):
      p = points[k] @ rotation.T * 0.6 + centre
      if k % 3 == 0:  # a cubic Bézier as a polyline
        s = np.linspace(0, 1, 24)[:, None]
        curve = (
            (1 - s) ** 3 * p[0]
            + 3 * (1 - s) ** 2 * s * p[1]
            + 3 * (1 - s) * s**2 * p[2]
            + s**3 * p[3]
        )
        draw.line([tuple(q) for q in curve.tolist()], fill=colours[k], width=int(widths[k]))
      elif k % 3 == 1:
        draw.line([tuple(p[0]), tuple(p[1])], fill=colours[k], width=int(widths[k]))
      else:
        r = abs(p[2, 0] - centre[0]) / 6 + 2
        draw.ellipse(
            [p[0, 0] - r, p[0, 1] - r, p[0, 0] + r, p[0, 1] + r],
            outline=colours[k],
            width=int(widths[k]),
        )
    frames[t] = np.asarray(image)
  return frames


def render_scene(row: dict, rng: np.random.Generator) -> np.ndarray:
  from PIL import Image, ImageDraw

  params, width, height, num_frames = clip_fields(row)
  speed = params["speed"]
  frames = np.empty((num_frames, height, width, 3), np.uint8)
  layout = params["layout"]
  if layout == "rotating":
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    xx -= rng.uniform(0.3, 0.7) * width
    yy -= rng.uniform(0.3, 0.7) * height
    pattern = rng.choice(["zoneplate", "star", "checker", "rings"])
    frequency = rng.uniform(0.02, 0.3)
    first = np.array(random_colour(rng), np.float32)
    second = np.array(random_colour(rng), np.float32)
    spin = speed * 0.01 * rng.choice([-1, 1])
    for t in range(num_frames):
      angle = spin * t
      u = xx * math.cos(angle) + yy * math.sin(angle)
      v = -xx * math.sin(angle) + yy * math.cos(angle)
      if pattern == "zoneplate":
        mix = 0.5 + 0.5 * np.cos(frequency * 0.02 * (u * u + v * v) + speed * 0.2 * t)
      elif pattern == "star":
        mix = (np.sin(np.arctan2(v, u) * params["objects"] * 2) > 0).astype(np.float32)
      elif pattern == "checker":
        cell = 2 + 40 * frequency
        mix = ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)
      else:
        mix = 0.5 + 0.5 * np.sin(np.hypot(u, v) * frequency - speed * 0.3 * t)
      frames[t] = (first + (second - first) * mix[..., None]).astype(np.uint8)
    return frames
  factor = 2 if params["antialias"] else 1  # supersample: smooth edges, else aliased
  big_w, big_h = width * factor, height * factor
  background = Image.fromarray(gradient_image(rng, big_w, big_h).astype(np.uint8)).convert("RGBA")
  if layout == "parallax":
    layers = []
    for depth in range(int(np.clip(params["objects"] // 4, 2, 6))):
      # Tileable 1-D 1/f ridge: a skyline or hill line per depth.
      spectrum = (rng.normal(size=64) + 1j * rng.normal(size=64)) / (np.arange(64) + 1) ** 1.5
      spectrum[0] = 0
      ridge = np.fft.irfft(spectrum, n=big_w * 2)
      ridge = (ridge - ridge.min()) / max(float(np.ptp(ridge)), 1e-9)
      base = big_h * (0.3 + 0.15 * depth)
      heights = base + ridge * big_h * 0.3
      layer = Image.new("RGBA", (big_w * 2, big_h), (0, 0, 0, 0))
      draw = ImageDraw.Draw(layer)
      colour = random_colour(rng, value=(0.2 + 0.1 * depth, 0.6 + 0.08 * depth))
      draw.polygon(
          [(0, big_h)]
          + [(x, float(heights[x])) for x in range(0, big_w * 2, 2)]
          + [(big_w * 2, big_h)],
          fill=colour + (255,),
      )
      for _ in range(int(rng.integers(0, 30))):  # trees, windows: detail on each layer
        x = float(rng.uniform(0, big_w * 2))
        y = float(heights[int(x) % (big_w * 2)])
        s = float(rng.uniform(2, 8) * factor * (depth + 1) / 2)
        draw.rectangle([x, y - 2 * s, x + s, y + s], fill=random_colour(rng) + (255,))
      layers.append((layer, (depth + 1) * speed * factor))
    for t in range(num_frames):
      image = background.copy()
      for layer, layer_speed in layers:
        offset = int(round(layer_speed * t)) % big_w
        image.alpha_composite(layer.crop((offset, 0, offset + big_w, big_h)))
      frames[t] = np.asarray(
          image.convert("RGB").resize((width, height), Image.Resampling.BOX)
          if factor > 1
          else image.convert("RGB")
      )
    return frames
  shapes = []
  for _ in range(params["objects"]):
    size = float(rng.uniform(0.03, 0.3) * big_h)
    shapes.append(
        {
            "kind": str(rng.choice(["ellipse", "rectangle", "polygon"])),
            "position": rng.uniform([0, 0], [big_w, big_h]),
            "velocity": rng.normal(0, speed * factor, 2),
            "size": size,
            "aspect": float(rng.uniform(0.4, 1.0)),
            "angle": float(rng.uniform(0, 2 * math.pi)),
            "spin": float(rng.normal(0, 0.05)),
            "colour": random_colour(rng) + (int(rng.integers(140, 256)),),
            "outline": random_colour(rng) if rng.random() < 0.3 else None,
            "sides": int(rng.integers(3, 9)),
        }
    )
  for t in range(num_frames):
    layer = Image.new("RGBA", (big_w, big_h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for shape in shapes:
      # Bounce off the frame edges: positions fold back into [0, size].
      x, y = shape["position"] + shape["velocity"] * t
      x = big_w - abs((x % (2 * big_w)) - big_w)
      y = big_h - abs((y % (2 * big_h)) - big_h)
      s = shape["size"]
      box = [x - s, y - s * shape["aspect"], x + s, y + s * shape["aspect"]]
      if shape["kind"] in ("ellipse", "rectangle"):
        draw_box = draw.ellipse if shape["kind"] == "ellipse" else draw.rectangle
        draw_box(box, fill=shape["colour"], outline=shape["outline"], width=factor)
      else:
        draw.regular_polygon(
            (x, y, s),
            shape["sides"],
            rotation=math.degrees(shape["angle"] + shape["spin"] * t),
            fill=shape["colour"],
            outline=shape["outline"],
        )
    image = Image.alpha_composite(background, layer).convert("RGB")
    if factor > 1:
      image = image.resize((width, height), Image.Resampling.BOX)
    frames[t] = np.asarray(image)
  return frames

"""Tunes an unsharp mask on a clip by gradient ascent on jaxvqa's predicted quality.

    python examples/sharpen_with_quality_loss.py --workdir workdirs/demo clip.mp4 --steps 20

The clip's model input (T sampled frames at the model's size, `QualityModel.load_clip`) is
sharpened by the unsharp mask

    out = clip(x + amount · (x − blur(x)), 0, 255),    blur: 5-tap binomial filter [1 4 6 4 1]/16

and `amount` (starting at 0: the clip unchanged) climbs the gradient of the predicted score,
`jax.grad` through the filter and the whole network (`jaxvqa.quality_fn`). Each step moves
`amount` by `--learning-rate` in the direction of the gradient's sign and is halved until the
score does not fall, so the score never decreases; a step that cannot rise stops the search.

The ascent follows the raw score: the calibration onto the label scale is increasing, so it ranks
clips the same way, but it is clipped to the labels' range, where its gradient is zero. The scores
printed before and after are the calibrated ones (what `jaxvqa score` reports) and the raw ones.
A tiny demo model's preference for sharpening is arbitrary; a trained one's is what it learnt.
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp

import jaxvqa

BINOMIAL_5 = jnp.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def blur(clip: jax.Array) -> jax.Array:
  """[T, H, W, 3] → the same, smoothed along H and W (edges repeated)."""
  for axis in (1, 2):
    pad = [(0, 0)] * clip.ndim
    pad[axis] = (2, 2)
    padded = jnp.pad(clip, pad, mode="edge")
    length = clip.shape[axis]
    clip = sum(
        weight * jax.lax.slice_in_dim(padded, tap, tap + length, axis=axis)
        for tap, weight in enumerate(BINOMIAL_5)
    )
  return clip


def unsharp_mask(clip: jax.Array, amount: jax.Array) -> jax.Array:
  return jnp.clip(clip + amount * (clip - blur(clip)), 0.0, 255.0)


def tune(
    raw_score, clip: jax.Array, *, steps: int, learning_rate: float, max_halvings: int = 6
) -> list[tuple[float, float, float]]:
  """(amount, raw score, its gradient) after 0, 1, ... accepted steps of the ascent."""
  # No jax.jit around this: quality_fn's network is already one compiled program, and the filter
  # is a few array operations.
  objective = jax.value_and_grad(lambda amount: raw_score(unsharp_mask(clip, amount)))
  amount = jnp.float32(0.0)
  value, gradient = objective(amount)
  history = [(float(amount), float(value), float(gradient))]
  for _ in range(steps):
    if gradient == 0:
      break
    step = learning_rate * jnp.sign(gradient)
    for _ in range(max_halvings + 1):
      new_value, new_gradient = objective(amount + step)
      if new_value >= value:
        break
      step = step / 2
    else:
      break  # no step in the gradient's direction raises the score: a local maximum
    amount, value, gradient = amount + step, new_value, new_gradient
    history.append((float(amount), float(value), float(gradient)))
  return history


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("clip", help="a video file")
  parser.add_argument("--workdir", required=True, help="a training run (python train.py)")
  parser.add_argument("--steps", type=int, default=20, help="ascent steps (default 20)")
  parser.add_argument(
      "--learning-rate",
      type=float,
      default=0.25,
      help="largest change of the sharpening amount per step (default 0.25)",
  )
  args = parser.parse_args(argv)

  model = jaxvqa.load(args.workdir)
  clip = jnp.asarray(model.load_clip(args.clip), jnp.float32)
  score = jaxvqa.quality_fn(model)
  raw_score = jaxvqa.quality_fn(model, calibrated=False)
  history = tune(raw_score, clip, steps=args.steps, learning_rate=args.learning_rate)
  (_, raw_before, gradient), (amount, raw_after, _) = history[0], history[-1]
  print(f"scale: {model.scale}")
  print(
      f"score before: {float(score(clip)):.6f} (raw {raw_before:.6f}; amount 0, "
      f"gradient {gradient:.6g})"
  )
  print(
      f"score after: {float(score(unsharp_mask(clip, amount))):.6f} (raw {raw_after:.6f}; "
      f"amount {amount:.6g}, {len(history) - 1} steps)"
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())

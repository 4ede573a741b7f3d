"""jaxvqa's SwinV2 against real timm, in fp32, on the machine where timm is installed.

    python benchmarks/timm_parity.py [--batch 2] [--tolerance 1e-4] [--models NAME ...]

For each model (default swinv2_tiny_window8_256 and swinv2_tiny_window16_256): build it with
`timm.create_model(name, pretrained=False)`, randomise every parameter (the zero-initialised
res-post-norms and the constant logit scales included, so they are tested), convert its
state_dict with `jaxvqa.models.convert`, run both on one random batch and print the max
relative error (max |ours − timm| / max |timm|) of each stage map and of the pooled features.
Exits 1 if any error exceeds the tolerance.

Stage maps are compared in jaxvqa's layout (the output of stage i after its trailing patch
merging): with timm >= 0.9 that is the output of `layers[i+1].downsample` for i < 3 and of
`layers[3]` for the last, caught with forward hooks. Pooled = `forward_head(forward_features(x),
pre_logits=True)`. Torch runs on CUDA when available, JAX on its default device; TF32 is off on
both sides and JAX matmuls use 'highest' precision.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

DEFAULT_MODELS = ("swinv2_tiny_window8_256", "swinv2_tiny_window16_256")


def randomize_(model, seed: int) -> None:
  """Perturb every parameter of a torch model in place, keeping logit scales below the clamp."""
  import torch

  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=gen).to(p.device)
      if "logit_scale" in name:
        p.copy_(math.log(10) + 0.3 * noise)
      elif "norm" in name:
        p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * noise)
      elif name.endswith("bias") or name.endswith(("q_bias", "v_bias")):
        p.copy_(0.05 * noise)
      else:
        p.add_(0.01 * noise)


def timm_reference(model, images_nchw) -> tuple[list[np.ndarray], np.ndarray]:
  """(stage maps [B, h, w, C] in jaxvqa's layout, pooled [B, C]) from a timm SwinV2."""
  import torch

  layers = model.layers
  if not hasattr(layers[1], "downsample") or isinstance(layers[1].downsample, torch.nn.Identity):
    raise SystemExit(
        "This timm keeps patch merging at the end of stages (timm < 0.9); "
        "the hooks below expect timm >= 0.9."
    )
  captured: dict[int, torch.Tensor] = {}
  hooks = [
      layers[i + 1].downsample.register_forward_hook(
          lambda _m, _inp, out, i=i: captured.__setitem__(i, out)
      )
      for i in range(len(layers) - 1)
  ]
  last = len(layers) - 1
  hooks.append(
      layers[last].register_forward_hook(lambda _m, _inp, out: captured.__setitem__(last, out))
  )
  try:
    with torch.no_grad():
      pooled = model.forward_head(model.forward_features(images_nchw), pre_logits=True)
  finally:
    for hook in hooks:
      hook.remove()
  # timm >= 0.9 SwinV2 stages are NHWC already.
  stages = [captured[i].float().cpu().numpy() for i in range(len(layers))]
  return stages, pooled.float().cpu().numpy()


def max_relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
  ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
  if ours.shape != reference.shape:
    return math.inf
  return float(np.abs(ours - reference).max() / np.abs(reference).max())


def compare(name: str, batch: int, seed: int) -> float:
  """Worst max relative error over the stages and pooled features of one model; prints each."""
  import jax
  import timm
  import torch

  from jaxvqa.models.convert import convert_state_dict
  from jaxvqa.models.swinv2 import SwinV2

  device = "cuda" if torch.cuda.is_available() else "cpu"
  model = timm.create_model(name, pretrained=False).eval()
  randomize_(model, seed)
  model = model.to(device)
  size = model.pretrained_cfg["input_size"][1:]
  images = np.random.default_rng(seed).standard_normal((batch, *size, 3)).astype(np.float32)

  ref_stages, ref_pooled = timm_reference(
      model, torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(device)
  )
  state = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
  window = model.layers[0].blocks[0].window_size[0]
  variables, kwargs = convert_state_dict(state, window_size=window)
  out = jax.jit(SwinV2(**kwargs).apply)(variables, images)

  worst = 0.0
  print(f"{name}: torch on {device}, jax on {jax.devices()[0].platform}, batch {batch}, {size}")
  for i, (ours, ref) in enumerate(zip(out.stages, ref_stages)):
    err = max_relative_error(np.asarray(ours), ref)
    worst = max(worst, err)
    print(f"  stage {i} {tuple(ref.shape)}: max relative error {err:.3e}")
  err = max_relative_error(np.asarray(out.pooled), ref_pooled)
  print(f"  pooled {tuple(ref_pooled.shape)}: max relative error {err:.3e}")
  return max(worst, err)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
  parser.add_argument("--batch", type=int, default=2)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--tolerance", type=float, default=1e-4)
  args = parser.parse_args(argv)

  import jax
  import torch

  try:
    import timm  # noqa: F401  (imported here so this file loads where timm is absent)
  except ImportError:
    print("timm is not installed; run this where it is (pip install timm).", file=sys.stderr)
    return 2
  torch.backends.cuda.matmul.allow_tf32 = False
  torch.backends.cudnn.allow_tf32 = False
  jax.config.update("jax_default_matmul_precision", "highest")

  worst = {name: compare(name, args.batch, args.seed) for name in args.models}
  failed = [name for name, err in worst.items() if not err <= args.tolerance]
  for name, err in worst.items():
    verdict = "FAIL" if name in failed else "ok"
    print(f"{name}: worst {err:.3e} ({verdict}, tolerance {args.tolerance:g})")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())

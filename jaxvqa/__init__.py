"""jaxvqa: no-reference video quality assessment in JAX/Flax.

The model of "Video Quality Assessment Based on Swin TransformerV2 and Coarse to
Fine Strategy" (arXiv 2401.08522): a SwinV2 backbone, multi-stage fusion, a
temporal transformer and coarse-to-fine (group contrastive + in-group rank)
losses, trained on compressed videos labelled with VMAF.
"""

__version__ = "0.1.0"

# The Python API (jaxvqa.serve.api) imports JAX; it is loaded on first use so that
# `import jaxvqa`, and `jaxvqa --help`, stay cheap.
_API_NAMES = ("QualityModel", "load", "quality_fn")
__all__ = ["__version__", *_API_NAMES]


def __getattr__(name: str):
  if name in _API_NAMES:
    from jaxvqa.serve import api

    return getattr(api, name)
  raise AttributeError(f"module 'jaxvqa' has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(_API_NAMES))

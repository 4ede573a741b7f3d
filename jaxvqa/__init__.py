"""jaxvqa: no-reference video quality assessment in JAX/Flax.

The model of "Video Quality Assessment Based on Swin TransformerV2 and Coarse to
Fine Strategy" (arXiv 2401.08522): a SwinV2 backbone, multi-stage fusion, a
temporal transformer and coarse-to-fine (group contrastive + in-group rank)
losses, trained on compressed videos labelled with VMAF.
"""

__version__ = "0.1.0"

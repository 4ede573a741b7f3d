r"""The teacher itself fine-tuned: the paper's model with EfficientNet-Lite0 as its backbone. GPU.

The same K folds, heads, crops and losses as configs/kfold_distilled.py's `swin_distilled`, with
the backbone replaced by the ImageNet EfficientNet-Lite0 that the distillation learns from
(`pip install -e ".[pretrain]"`; its batch norms folded into per-channel affines, see
jaxvqa/models/efficientnet.py). It answers how much of the teacher's quality knowledge the
distillation hands on: the row to compare the distilled SwinV2 with.

  python train.py --config configs/kfold_teacher.py --config.data.manual_dir=/data/corpus-set

Prints mean ± standard error over 5 folds by parent medium beside the bits-per-pixel line, and
writes WORKDIR/shipped: its ship model (jaxvqa-vmaf-lite0-1, trained without the held-out media),
the candidate to replace s-3 (docs/MODEL.md). Once the folds are measured, that model alone:

  python train.py --config configs/kfold_teacher.py --config.data.manual_dir=/data/corpus-set \
      --config.kfold.ship_only=True

Figures: docs/RESULTS.md.
"""

import ml_collections

from configs import kfold, kfold_distilled


def get_config(variants: str = "") -> ml_collections.ConfigDict:
  """`variants`: a comma-separated subset (all when empty), as in configs/kfold.py."""
  config = kfold_distilled.get_config("swin_distilled")
  config.workdir = "workdirs/kfold_teacher"
  config.model.backbone = ml_collections.ConfigDict(dict(name="efficientnet_lite0"))
  config.model.statistics_region = 0  # no scene-statistics variant among these
  config.init = ml_collections.ConfigDict(dict(imagenet="package:efficientnet_lite0"))
  config.variants = ml_collections.ConfigDict(
      dict(teacher_imagenet=kfold.variant(pretrain=False, start="imagenet"))
  )
  # Its ship model is the candidate to replace s-3 (docs/MODEL.md); bfloat16 storage keeps the
  # backbone's 5.6 M weights at 11 MB in the wheel. `--config.kfold.ship_only=True` trains that
  # model alone once the folds are measured.
  config.kfold.ship_variant = "teacher_imagenet"
  config.kfold.ship_id = "jaxvqa-vmaf-lite0-1"
  config.kfold.ship_weights = "bfloat16"
  kfold.select_variants(config, variants, "configs/kfold_teacher.py")
  return config

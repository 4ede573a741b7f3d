r"""The paper's model on the K-fold protocol from each start: random init and the distilled SwinV2.

Run (GPU), after `configs/distill.py` has written WORKDIR/backbone:
  jaxvqa fetch-photos --out /data/photos
  jaxvqa make-corpus --out /data/corpus --count 400 --width 320 --height 180 --frames 16 \
      --photos /data/photos
  jaxvqa make-dataset --sources /data/corpus --out /data/corpus-set \
      --scales 1,0.5 --ladder 40k,120k,360k --codec libx264,libx265
  python train.py --config configs/kfold_distilled.py --config.data.manual_dir=/data/corpus-set \
      --config.init.distilled=workdirs/distill/backbone \
      --config.init.distilled_iqa=workdirs/distill/iqa_backbone

Every variant is the same network (configs/distill.py's `student_model`: the mini SwinV2, the
multi-stage fusion and the temporal transformer) reading one native 128 px crop per frame, 4
frames; they differ in where the backbone starts and in the losses:

  swin_random            random initialisation (what every earlier run of the paper's model did)
  swin_distilled         the distilled backbone, the paper's losses + the within-source rank term
  swin_distilled_paper   the distilled backbone, the paper's losses exactly (rank margin 0)
  swin_distilled_iqa     the distilled backbone after the IQA stage (configs/distill.py's `iqa`)
  scene_statistics       the shipped model's recipe (s-3), trained on the same folds

Prints mean ± standard error over 5 folds by parent medium beside the bits-per-pixel line
(configs/kfold.py says what each column is). Figures: docs/RESULTS.md.
"""

import ml_collections

from configs import distill, kfold


def get_config(variants: str = "") -> ml_collections.ConfigDict:
  """`variants`: a comma-separated subset (all when empty), as in configs/kfold.py."""
  config = kfold.get_config()
  config.workdir = "workdirs/kfold_distilled"
  config.model = distill.student_model()
  # No container or detail branch; the scene statistics over the whole 128 px crop (s-3's region)
  # for the scene_statistics variant, gated off in the others.
  config.model.update(
      container_features=False, detail_features=0, detail_depth=1, statistics_region=128
  )
  config.data.update(num_frames=4, frame_size=128, fragment_grid=1, videos_per_group=4)
  config.pretrain.steps = 0  # no free-label stage: the starts under test are the backbones
  config.optim.update(learning_rate=2e-4, steps=3000, warmup_steps=200)
  config.init = ml_collections.ConfigDict(dict(distilled="", distilled_iqa=""))
  config.variants = ml_collections.ConfigDict(
      dict(
          swin_random=kfold.variant(pretrain=False),
          swin_distilled=kfold.variant(pretrain=False, start="distilled"),
          swin_distilled_paper=kfold.variant(
              pretrain=False, start="distilled", source_rank=0.0, margin=0.0
          ),
          swin_distilled_iqa=kfold.variant(pretrain=False, start="distilled_iqa"),
          # The shipped model's recipe (jaxvqa-vmaf-s-3: fixed scene statistics of the same crop
          # and a learnt head) on the same folds, so the comparison is paired.
          scene_statistics=kfold.variant(
              pretrain=False, statistics=True, embedding=False, group=0.0, source_plcc=1.0
          ),
      )
  )
  config.kfold.ship_variant = ""  # ships nothing until a variant beats s-3 (docs/MODEL.md)
  config.kfold.ship_id = "jaxvqa-vmaf-swin-1"
  kfold.select_variants(config, variants, "configs/kfold_distilled.py")
  return config

r"""The paper's setup: SwinV2-T (window 16, 256 px), 8 frames, coarse-to-fine losses. GPU.

Run:
  jaxvqa make-dataset --sources /path/to/sources --out /data/compressed \
      --codec libx264,libx265 --ladder 200k,500k,1M,2M,4M,8M
  python train.py --config configs/default.py \
      --config.data.manual_dir=/data/compressed --config.workdir=workdirs/default

Expected: held-out-content PLCC/SRCC against VMAF; the paper reports PLCC 0.924 / SRCC 0.903 on
its (non-public) compressed set. Our figures on package-shipped sources are in docs/RESULTS.md.
Start from ImageNet weights with --config.init.backbone=/path/to/converted (see
`jaxvqa convert-weights`) or from an IQA-pretrained spatial module with --config.init.spatial=WORKDIR.
"""

import ml_collections

from jaxvqa.models import swinv2_presets


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.workdir = "workdirs/default"

  config.data = ml_collections.ConfigDict(
      dict(
          builder="compressed",  # a key of jaxvqa.data.builders.BUILDERS
          manual_dir="",  # the `jaxvqa make-dataset --out` directory (or a public set's release)
          data_dir="",  # where TFDS writes the prepared set; "" = <cache_dir>/tfds
          cache_dir="",  # "" = $JAXVQA_CACHE or ~/.cache/jaxvqa
          # The embedded demo set (configs/demo.py): package-shipped clips and photos, encoded at a
          # small ladder and VMAF-labelled on first use, then cached under cache_dir.
          # The ladder is low because the clips are small: at 160×128 these rungs span VMAF ≈ 60–97.
          demo=dict(
              enabled=False,
              num_sources=16,
              width=160,
              height=128,
              num_frames=40,
              ladder_kbps=(15.0, 30.0, 60.0, 120.0),
              codecs=("libx264",),
          ),
          train_fraction=0.7,  # split by source content
          validation_fraction=0.1,
          split_seed=0,
          num_frames=8,
          frame_size=256,
          sampling="resize_crop",  # or "fragments" (native-resolution grid, the authors' SAMA)
          fragment_grid=8,  # fragments: grid × grid native patches of frame_size/grid px
          fragment_align=1,  # fragments: origins at multiples of this many px (1: anywhere)
          # The coarse stage's groups: "set" = the set's own (bitrate rungs); "mos_quantile" =
          # quality_levels equal-count MOS levels of the training split, for MOS sets, which
          # have no rungs (jaxvqa/data/grouping.py, docs/METHOD.md).
          grouping="set",
          quality_levels=5,  # mos_quantile: the ACR scale's five categories' worth of levels
          groups_per_batch=4,  # bitrate groups per batch ...
          videos_per_group=2,  # ... × videos per group = global batch size (8, as the paper)
          eval_batch_size=8,
          num_workers=8,
      )
  )

  config.model = ml_collections.ConfigDict(
      dict(
          task="vqa",  # "vqa": videos → score; "iqa": the spatial half on images (pre-training)
          dtype="bfloat16",  # compute dtype; parameters stay float32
          # A SwinV2 checkpoint's name (timm's or HF's, e.g. "swinv2_base_window12to24_192to384"
          # or "microsoft/swinv2-small-patch4-window16-256"): sets the backbone's architecture,
          # fusion.out_dim, temporal.width and data.frame_size to fit it at the start of the run
          # (jaxvqa.models.swinv2_presets; docs/REPRODUCE.md lists them). "": the fields as given.
          preset="",
          # attention_impl: "auto", the fused window-attention kernel where the program runs on a
          # CUDA GPU and XLA elsewhere; "xla" or "pallas" force a path (docs/PERFORMANCE.md).
          # How the model runs, not what it is: scoring runs any run on "auto".
          backbone=dict(
              swinv2_presets.VARIANTS["swinv2_tiny_window16_256"],
              mlp_ratio=4.0,
              drop_path_rate=0.1,
              attention_impl="auto",
          ),
          fusion=dict(
              grid=8,
              num_layers=2,
              num_heads=16,
              mlp_dim=64,
              dropout=0.5,
              feature_dropout=0.1,
              out_dim=768,
              token_layout="channel_concat",
              stage_width=256,
              token_norm=False,
          ),
          temporal=dict(
              width=768, num_layers=2, num_heads=8, mlp_ratio=4.0, dropout=0.1, max_frames=64
          ),
          head_hidden=64,
          projection_dim=128,
          freeze_backbone=False,
      )
  )

  # Declarative data: fields alike in shape to the model's dicts above.
  config.loss = ml_collections.ConfigDict(
      dict(
          plcc=1.0,
          l1=0.0,
          rank=0.3,
          all_pairs_rank=0.0,
          group=1.0,
          temperature=0.1,
          margin=0.0,
          contrastive_variant="mean_positive",
      )
  )

  config.optim = ml_collections.ConfigDict(
      dict(
          learning_rate=3e-5,
          backbone_lr_multiplier=1.0,
          weight_decay=0.05,
          warmup_epochs=2.5,
          epochs=50.0,  # float: fractions of an epoch are fine
          grad_clip_norm=1.0,
          ema_decay=0.999,  # 0 disables the EMA copy
          max_consecutive_nonfinite=5,  # skipped non-finite steps before the run stops
      )
  )

  config.train = ml_collections.ConfigDict(
      dict(
          log_every_steps=20,
          eval_every_epochs=1,
          checkpoint_every_steps=500,
          keep_checkpoints=3,
          progress_bar=True,
          # A rerun on a workdir whose config.json differs is refused (it would resume, then
          # rewrite config.json to describe checkpoints it did not make); True resumes anyway.
          resume_with_changed_config=False,
      )
  )

  config.init = ml_collections.ConfigDict(
      dict(
          backbone="",  # directory written by `jaxvqa convert-weights`
          spatial="",  # workdir of an IQA pre-training run (configs/iqa_pretrain.py)
          # every weight from a shipped model: "shipped" (the one inside jaxvqa, docs/MODEL.md)
          # or a directory with its model.json and params.msgpack; config.model must be its own
          model="",
      )
  )
  return config

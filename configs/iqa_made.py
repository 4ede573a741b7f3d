r"""IQA pre-training on a set made here: KADID-10K's recipe applied to our own photos. GPU.

The spatial half (SwinV2 + multi-stage fusion + image head) pre-trained as in
configs/iqa_pretrain.py, on `jaxvqa make-iqa-set`'s photos × 26 synthetic distortions × 5 levels,
labelled by MS-SSIM against each pristine reference, split by reference photo:

  jaxvqa fetch-photos --out photos
  jaxvqa make-iqa-set --photos photos --package-photos --out iqa_made
  python train.py --config configs/iqa_made.py --config.data.manual_dir=iqa_made \
      --config.workdir=workdirs/iqa_made
  python train.py --config configs/default.py --config.data.manual_dir=/data/compressed \
      --config.init.spatial=workdirs/iqa_made

Expected: held-out PLCC/SRCC against the MS-SSIM labels printed at the end (not yet run). They
measure how well the model predicts MS-SSIM from the distorted image alone, not human opinion.
"""

from configs import iqa_pretrain


def get_config():
  config = iqa_pretrain.get_config()
  config.workdir = "workdirs/iqa_made"
  data = config.data
  data.builder = "distorted_photos"
  # By reference photo: with about 50 photos, 8 validate and 8 test, each with all its
  # distortions.
  data.train_fraction = 0.7
  data.validation_fraction = 0.15
  # About 6,000 images, 4,000 of them for training: fewer epochs than KonIQ-10k's would
  # over-fit less on the few scenes.
  config.optim.update(epochs=15, warmup_epochs=1)
  return config

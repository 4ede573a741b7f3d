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

The default photos (the fetch-photos set, 42, plus scikit-image's 17; the 11 greyscale ones are
skipped) make 48 references × 131 = 6,288 PNGs, 1.6 GB, in 14 min with 2 jobs on 2 cores.

Expected: held-out PLCC/SRCC against the MS-SSIM labels printed at the end (not yet run). They
measure how well the model predicts MS-SSIM from the distorted image alone, not human opinion.
"""

from configs import iqa_pretrain


def get_config():
  config = iqa_pretrain.get_config()
  config.workdir = "workdirs/iqa_made"
  data = config.data
  data.builder = "distorted_photos"
  # By reference photo: of the default set's 48, 7 validate and 7 test, each with all its
  # distortions.
  data.train_fraction = 0.7
  data.validation_fraction = 0.15
  # About 4,400 training images from only 34 scenes: fewer epochs than iqa_pretrain's, to
  # over-fit less on the scenes.
  config.optim.update(epochs=15, warmup_epochs=1)
  return config

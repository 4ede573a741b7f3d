r"""IQA pre-training: the spatial half (SwinV2 + multi-stage fusion + image head) on an image set. GPU.

docs/METHOD.md: the spatial module is first trained on image-quality data, then the video model
starts from it. Bring an image set (KonIQ-10k here; kadid_10k, live_iqa and clive also work), then:

  python train.py --config configs/iqa_pretrain.py \
      --config.data.manual_dir=/data/koniq10k --config.workdir=workdirs/iqa
  python train.py --config configs/default.py --config.data.manual_dir=/data/compressed \
      --config.init.spatial=workdirs/iqa

Expected: held-out PLCC/SRCC against MOS printed at the end (KonIQ-10k with an ImageNet-initialised
SwinV2-T typically reaches SRCC ≈ 0.9 in the literature; we have not run it yet).
Images carry no bitrate groups, so the group contrastive loss is off and the rank loss is over all
pairs of the batch; batches are plain shuffles of groups_per_batch × videos_per_group images.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.workdir = "workdirs/iqa"

  data = config.data
  data.builder = "koniq_10k"
  data.num_frames = 1  # images load as one-frame clips
  data.groups_per_batch = 4  # one group only: the product (32) is the batch size
  data.videos_per_group = 8
  data.eval_batch_size = 32

  config.model.task = "iqa"
  config.loss.update(plcc=1.0, rank=0.0, all_pairs_rank=0.3, group=0.0)
  config.optim.update(epochs=20, warmup_epochs=1)
  return config

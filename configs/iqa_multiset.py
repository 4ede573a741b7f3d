r"""IQA pre-training on several image sets at once, as the paper pre-trains its spatial module. GPU.

The four sets the paper names, each in its release's layout (see each builder's instructions):

  python train.py --config configs/iqa_multiset.py \
      --config.data.mixture.koniq_10k=/data/koniq10k \
      --config.data.mixture.kadid_10k=/data/kadid10k \
      --config.data.mixture.live_iqa=/data/databaserelease2 \
      --config.data.mixture.clive=/data/ChallengeDB_release \
      --config.init.backbone=weights/swinv2_t16 --config.workdir=workdirs/iqa_multiset
  python train.py --config configs/default.py ... --config.init.spatial=workdirs/iqa_multiset

Every batch holds 8 images of each of the 4 sets (the group sampler, one group per set), and the
only score loss is the rank loss inside each set: the sets' scales (MOS 1-5, 0-100, DMOS, DCR)
are never compared, as UNIQUE (Zhang et al., TIP 2021) trains across IQA sets by pairs drawn
within each; jaxvqa/data/mixture.py says why rather than rescaling. Leave a set's directory ""
to drop it (at least two). Validation and test metrics are over the sets' splits pooled.
"""

import ml_collections

from configs import iqa_pretrain
from jaxvqa.data import mixture


def get_config():
  config = iqa_pretrain.get_config()
  config.workdir = "workdirs/iqa_multiset"
  data = config.data
  data.builder = mixture.MIXTURE
  data.manual_dir = ""  # the sets' directories are in data.mixture
  data.mixture = ml_collections.ConfigDict({name: "" for name in mixture.IMAGE_SETS})
  data.groups_per_batch = len(mixture.IMAGE_SETS)  # every batch: each set ...
  data.videos_per_group = 8  # ... 8 images of it (32 in all, as configs/iqa_pretrain.py)
  config.loss.update(plcc=0.0, rank=1.0, all_pairs_rank=0.0, group=0.0)
  return config

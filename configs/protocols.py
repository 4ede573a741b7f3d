r"""The field's standard protocols on the public sets, one command each (docs/REPRODUCE.md).

Run:
  jaxvqa train --config protocols:konvid_1k --config.data.manual_dir=/data/KoNViD_1k
  jaxvqa train --config protocols:live_vqc --config.data.manual_dir=/data/LIVE-VQC
  jaxvqa train --config protocols:youtube_ugc --config.data.manual_dir=/data/YouTube-UGC
  jaxvqa train --config protocols:lsvq --config.data.manual_dir=/data/LSVQ \
      --config.protocol.cross_sets.konvid_1k=/data/KoNViD_1k \
      --config.protocol.cross_sets.live_vqc=/data/LIVE-VQC
(`python train.py --config configs/protocols.py:konvid_1k ...` is the same.) Add the start the
anchors had, e.g. `--config.model.preset=swinv2_tiny_window16_256 --config.init.spatial=WORKDIR`.

- Intra-set (konvid_1k, live_vqc, youtube_ugc): `protocol.splits` runs (10), each on its own random
  split by video with split seed first_seed + k: 70 % training, 10 % validation (picks the best
  checkpoint), 20 % test (the share the field reports). Expected: a table of each split's test
  SRCC and PLCC, then their median and interquartile range, as FAST-VQA and DOVER compare them
  (their figures: docs/REPRODUCE.md §1).
- Cross-set (lsvq): one run on LSVQ's official training split, then its best checkpoint on LSVQ
  test, LSVQ test_1080p and, without fine-tuning, every video of each set in
  `protocol.cross_sets` (an empty path leaves that row out).

Each run is a train.py run of its own in WORKDIR/split_<seed> (or WORKDIR/lsvq), so rerunning the
command resumes the unfinished ones and reuses the finished; the table also goes to
WORKDIR/protocol.json (jaxvqa/evaluate/protocols.py).
"""

import ml_collections

from configs import default

INTRA_SET = ("konvid_1k", "live_vqc", "youtube_ugc")
CROSS_SET = ("lsvq",)


def get_config(name: str = "konvid_1k") -> ml_collections.ConfigDict:
  """`name`: the training set, one of INTRA_SET or CROSS_SET."""
  if name not in INTRA_SET + CROSS_SET:
    raise ValueError(
        f"configs/protocols.py: unknown protocol {name!r}; known: {INTRA_SET + CROSS_SET}"
    )
  config = default.get_config()
  config.workdir = f"workdirs/protocol_{name}"
  # MOS sets have no bitrate groups: the coarse stage's groups are quality levels by MOS.
  config.data.update(builder=name, grouping="mos_quantile")
  config.data.update(train_fraction=0.7, validation_fraction=0.1, split_seed=0)
  config.protocol = ml_collections.ConfigDict(
      dict(
          name=name,
          splits=10 if name in INTRA_SET else 1,
          first_seed=0,
          # Sets scored whole by the cross-set model: short name -> manual_dir ("" to skip).
          cross_sets=ml_collections.ConfigDict(
              dict(konvid_1k="", live_vqc="") if name in CROSS_SET else {}
          ),
      )
  )
  return config

r"""The loss ablations of configs/default.py: each coarse-to-fine loss removed in turn.

Run one of them by name after the colon:
  python train.py --config configs/ablations.py:no_group --config.data.manual_dir=/data/compressed
  python train.py --config configs/ablations.py:no_rank  ...
  python train.py --config configs/ablations.py:plcc_only ...

  no_group    group contrastive loss off (the coarse stage)
  no_rank     in-group rank loss off (the fine stage)
  plcc_only   both off: the PLCC loss alone, the plain regression baseline

Compare each with configs/default.py on the same data and seed; docs/results/HISTORY.md has our
rows.
Any other field can still be overridden on the command line (e.g. --config.optim.epochs=10).
"""

from configs import default

ABLATIONS = {
    "no_group": dict(group=0.0),
    "no_rank": dict(rank=0.0),
    "plcc_only": dict(group=0.0, rank=0.0),
}


def get_config(name: str = ""):
  if name not in ABLATIONS:
    raise ValueError(
        f"configs/ablations.py needs an ablation name after a colon, one of "
        f"{sorted(ABLATIONS)} (e.g. --config configs/ablations.py:no_group); got {name!r}"
    )
  config = default.get_config()
  config.workdir = f"workdirs/ablation_{name}"
  config.loss.update(ABLATIONS[name])
  return config

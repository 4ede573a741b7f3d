r"""Trains a jaxvqa model: `python train.py --config configs/demo.py [--config.field=value ...]`.

Flags: --config (an ml_collections config file; `--config.a.b=v` overrides a field, unknown fields
are an error) and --workdir (overrides config.workdir). A run that finds checkpoints in its workdir
resumes from the latest one.
"""

from absl import app, flags
from ml_collections import config_flags

from jaxvqa import trainer

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file in configs/.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: config.workdir).")
flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value or _CONFIG.value.workdir)


if __name__ == "__main__":
  app.run(main)

r"""Evaluates a trained checkpoint: `python eval.py --workdir WORKDIR [--split test] [--which best]`.

Prints PLCC, SRCC, KRCC, RMSE and the count for the split, and writes OUT/<split>_<which>_<weights>
.json (metrics and every video's score) and .png (label against score with the fitted logistic);
OUT defaults to WORKDIR/eval. The run's config comes from WORKDIR/config.json; data fields may be
overridden, e.g. `--config.data.manual_dir=/data/other_set` to evaluate on another data set.
Exit status 2 with one line on stderr for a bad flag or config field, a workdir that is not a
train.py run and a damaged checkpoint. See docs/SCORING.md.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from configs import default
from jaxvqa import run_log

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory written by train.py.")
_SPLIT = flags.DEFINE_enum("split", "test", ["train", "validation", "test"], "Split to evaluate.")
_WHICH = flags.DEFINE_enum("which", "best", ["best", "latest"], "Checkpoint to load.")
_RAW_WEIGHTS = flags.DEFINE_bool("raw_weights", False, "Raw weights instead of their EMA.")
_OUT = flags.DEFINE_string("out", None, "Output directory (default: WORKDIR/eval).")
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", None, "Clips per device per call (default: the same as `jaxvqa score`).")
# The schema of `--config.data.<field>=value` overrides; values apply to the run's saved config.
try:  # the flag applies `--config.*` overrides from sys.argv as it is defined
  _CONFIG = config_flags.DEFINE_config_dict("config", default.get_config())
except (AttributeError, KeyError) as unknown:
  run_log.exit_with_error("eval.py", run_log.unknown_field_message(unknown, sys.argv, "config"))
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  overrides = config_flags.get_override_values(flags.FLAGS["config"])
  batch = {"per_device_batch": _BATCH_SIZE.value} if _BATCH_SIZE.value else {}
  # Imported here: flag and config errors are reported before the slow imports.
  from jaxvqa import checkpointing, eval_run

  try:
    eval_run.main(_WORKDIR.value, split=_SPLIT.value, which=_WHICH.value,
                  ema=not _RAW_WEIGHTS.value, out_dir=_OUT.value, overrides=overrides, **batch)
  except (checkpointing.CheckpointError, FileNotFoundError, ValueError) as error:
    # ValueError covers jaxvqa.config.ConfigError, a refused override and an empty split.
    run_log.exit_with_error("eval.py", error)


if __name__ == "__main__":
  app.run(main, flags_parser=run_log.parse_flags_or_exit("eval.py"))

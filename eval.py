r"""Evaluates a trained checkpoint: `python eval.py --workdir WORKDIR [--split test] [--which best]`.

Prints PLCC, SRCC, KRCC, RMSE and the count for the split, and writes OUT/<split>_<which>_<weights>
.json (metrics and every video's score) and .png (label against score with the fitted logistic);
OUT defaults to WORKDIR/eval. The run's config comes from WORKDIR/config.json; data fields may be
overridden, e.g. `--config.data.manual_dir=/data/other_set` to evaluate on another data set.
The same as `jaxvqa eval` (jaxvqa/evaluate/launch.py); flags are spelt as `jaxvqa`'s
(`--raw-weights`, `--batch-size`); `--version` prints the version.
Exit status 2 with one line on stderr for a bad flag or config field, a workdir that is not a
train.py run and a damaged checkpoint. See docs/SCORING.md.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

import jaxvqa
from jaxvqa.train import run_log

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory written by train.py.")
_SPLIT = flags.DEFINE_string("split", "test", "Split to evaluate: train, validation or test.")
_WHICH = flags.DEFINE_string("which", "best", "Checkpoint to load: best or latest.")
_RAW_WEIGHTS = flags.DEFINE_bool("raw-weights", False, "Raw weights instead of their EMA.")
_OUT = flags.DEFINE_string("out", None, "Output directory (default: WORKDIR/eval).")
_BATCH_SIZE = flags.DEFINE_integer(
    "batch-size", None, "Clips per device per call (default: the same as `jaxvqa score`)."
)
flags.mark_flags_as_required(["workdir"])
OVERRIDE = "--config."  # --config.data.<field>=value: a data field of the run's saved config


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parse, plus --version; the override schema is defined only when overrides are given,
  so --help lists eval.py's own flags rather than every field of a config."""
  if "--version" in argv[1:]:
    print(f"eval.py (jaxvqa {jaxvqa.__version__})")
    sys.exit(0)
  if not any(arg.startswith(OVERRIDE) for arg in argv[1:]):
    try:
      return flags.FLAGS(argv)
    except flags.Error as error:
      run_log.exit_with_error("eval.py", error)
  from configs import default

  try:  # the flag applies `--config.*` overrides from sys.argv as it is defined
    config_flags.DEFINE_config_dict("config", default.get_config())
  except (AttributeError, KeyError) as unknown:
    run_log.exit_with_error("eval.py", run_log.unknown_field_message(unknown, argv, "config"))
  return run_log.parse_flags_or_exit("eval.py")(argv)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  overrides = (
      config_flags.get_override_values(flags.FLAGS["config"]) if "config" in flags.FLAGS else {}
  )
  # Imported here: flag and config errors are reported before the slow imports.
  from jaxvqa.evaluate import launch

  # An argument vector (declarative), alike in shape to jaxvqa/commands/evaluate.py's.
  launch.run(
      _WORKDIR.value,
      split=_SPLIT.value,
      which=_WHICH.value,
      ema=not _RAW_WEIGHTS.value,
      out_dir=_OUT.value,
      overrides=overrides,
      batch_size=_BATCH_SIZE.value,
      program="eval.py",
  )


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)

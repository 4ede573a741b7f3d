r"""Trains a jaxvqa model: `python train.py --config configs/demo.py [--config.field=value ...]`.

Flags: --config (an ml_collections config file; `--config.a.b=v` overrides a field, unknown fields
are an error), --workdir (overrides config.workdir) and --version. A run that finds checkpoints in its workdir
resumes from the newest one, whenever the previous run was killed, if its config is the one the
workdir's config.json records: a changed one is refused, naming the fields, unless
--config.train.resume_with_changed_config=True resumes with it on purpose.

Compiled programs persist in $JAXVQA_CACHE/xla (default ~/.cache/jaxvqa/xla), so a run that
resumes, or reruns the same config, loads its training step instead of compiling it again;
JAXVQA_COMPILATION_CACHE=DIR puts them elsewhere and JAXVQA_COMPILATION_CACHE=off turns it off.

Exit status: 0 done; 2 with one line on stderr for a config error, a damaged checkpoint or a
workdir another train.py is writing; 128 + the signal number (143 SIGTERM, 130 SIGINT) when a
signal stopped training: it saved first, and rerunning the same command resumes; 130 for
Ctrl-C outside the training steps (the final evaluation), with the saves made so far kept.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

import jaxvqa
from jaxvqa.train import run_log

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file in configs/.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: config.workdir).")
flags.mark_flags_as_required(["config"])


def enable_compilation_cache() -> str | None:
  """Points JAX's persistent compilation cache at the project's cache (see the module
  docstring); returns the directory, or None when turned off."""
  import os

  import jax

  from jaxvqa.data import demo

  chosen = os.environ.get("JAXVQA_COMPILATION_CACHE", "")
  if chosen.lower() == "off":
    return None
  directory = chosen or str(demo.cache_dir() / "xla")
  jax.config.update("jax_compilation_cache_dir", directory)
  return directory


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  run_log.ignore_closed_event_loop_callbacks()
  enable_compilation_cache()
  # Imported here: flag and config errors are reported before the slow imports.
  from jaxvqa import config as config_lib
  from jaxvqa.train import checkpointing, trainer

  config, workdir = _CONFIG.value, _WORKDIR.value or _CONFIG.value.workdir
  try:
    if "kfold" in config:  # configs/kfold.py: every variant on every fold (jaxvqa/kfold/)
      from jaxvqa.kfold import protocol as kfold

      kfold.run_kfold(config, workdir)
    elif "distill" in config:  # configs/distill.py: the teacher's features into the SwinV2
      from jaxvqa.distill import loop

      loop.run_distillation(config, workdir)
    else:
      trainer.train_and_evaluate(config, workdir)
  except trainer.TrainingInterrupted as stop:
    print(f"train.py: {stop}", file=sys.stderr)
    sys.exit(128 + stop.signum)
  except KeyboardInterrupt:
    # Outside the training steps (the final evaluation, loading data): every save made so far
    # is whole, so a rerun resumes from the newest.
    print(
        "train.py: interrupted (Ctrl-C); the checkpoints saved so far are kept: rerun the same "
        "command to resume",
        file=sys.stderr,
    )
    sys.exit(130)
  except (
      config_lib.ConfigError,
      checkpointing.CheckpointError,
      checkpointing.WorkdirLockedError,
  ) as error:
    run_log.exit_with_error("train.py", error)


def parse_flags(argv: list[str]) -> list[str]:
  if "--version" in argv[1:]:
    print(f"train.py (jaxvqa {jaxvqa.__version__})")
    sys.exit(0)
  return run_log.parse_flags_or_exit("train.py")(argv)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)

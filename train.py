r"""Trains a jaxvqa model: `python train.py --config configs/demo.py [--config.field=value ...]`.

The same as `jaxvqa train` (jaxvqa/train/launch.py does the work for both). Flags: --config (an
ml_collections config file, or the bare name of a shipped one: `demo`, `demo:scratch`;
`--config.a.b=v` overrides a field, unknown fields are an error), --workdir (overrides
config.workdir) and --version. A run that finds checkpoints in its workdir resumes from the newest
one, whenever the previous run was killed, if its config is the one the
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

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A config file, or a shipped config's name (demo, demo:scratch)."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: config.workdir).")
flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  # Imported here: flag and config errors are reported before the slow imports.
  from jaxvqa.train import launch

  launch.run(_CONFIG.value, _WORKDIR.value or _CONFIG.value.workdir, "train.py")


def parse_flags(argv: list[str]) -> list[str]:
  if "--version" in argv[1:]:
    print(f"train.py (jaxvqa {jaxvqa.__version__})")
    sys.exit(0)
  from jaxvqa.train import launch

  try:  # a bare name (`--config demo:scratch`) is a shipped config
    argv = launch.resolve_config_argv(argv)
  except FileNotFoundError as missing:
    run_log.exit_with_error("train.py", missing)
  return run_log.parse_flags_or_exit("train.py")(argv)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)

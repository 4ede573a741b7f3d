"""Starting a run from a command line: which config file `--config` names, its `--config.a.b=v`
overrides, the compilation cache, and which loop the config asks for. `train.py` and `jaxvqa train`
both go through here, so they accept the same arguments and stop with the same exit status.

A config is named by a path (`configs/demo.py`, `my/run.py:scratch`) or, when no such file exists,
by the bare name of a shipped one (`demo`, `demo:scratch`, `kfold`): the `configs` package, which
the wheel installs beside `jaxvqa` (pyproject.toml), holds them. Importing this module imports no
JAX.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import ml_collections

from jaxvqa.train import run_log

CONFIG_FLAG = "config"


def shipped_configs_dir() -> Path:
  """The directory of the importable `configs` package: the checkout's when run from it, else the
  one installed beside jaxvqa."""
  spec = importlib.util.find_spec("configs")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError("no `configs` package is importable: reinstall jaxvqa")
  return Path(next(iter(spec.submodule_search_locations)))


def shipped_config_names() -> list[str]:
  return sorted(
      path.stem for path in shipped_configs_dir().glob("*.py") if not path.stem.startswith("_")
  )


def resolve_config(spec: str) -> str:
  """`spec` as a config file path that ml_collections loads: an existing path stays as given, a
  bare name (`demo`, `demo:scratch`) becomes the shipped `configs/demo.py[:scratch]`."""
  path, colon, argument = spec.partition(":")
  if os.path.isfile(path) or path.endswith(".py") or os.sep in path:
    return spec  # a path: a missing one is reported by the loader with its name
  shipped = shipped_configs_dir() / f"{path}.py"
  if not shipped.is_file() or path.startswith("_"):
    raise FileNotFoundError(
        f"--{CONFIG_FLAG} {path}: no such config file, and no shipped config of that name "
        f"(shipped: {', '.join(shipped_config_names())})"
    )
  return f"{shipped}{colon}{argument}"


def resolve_config_argv(argv: list[str]) -> list[str]:
  """argv with the value of `--config X` / `--config=X` resolved (resolve_config)."""
  resolved = list(argv)
  for index, arg in enumerate(resolved):
    if arg.startswith(f"--{CONFIG_FLAG}="):
      resolved[index] = f"--{CONFIG_FLAG}={resolve_config(arg.split('=', 1)[1])}"
    elif arg == f"--{CONFIG_FLAG}" and index + 1 < len(resolved):
      resolved[index + 1] = resolve_config(resolved[index + 1])
  return resolved


def load_config(spec: str, overrides: list[str], program: str) -> ml_collections.ConfigDict:
  """The config `spec` names with `overrides` (`--config.a.b=v`, as absl spells them) applied,
  parsed exactly as train.py parses its flags; a bad file or field ends `program` with one line."""
  from absl import flags
  from ml_collections import config_flags

  try:
    argv = [program, f"--{CONFIG_FLAG}={resolve_config(spec)}", *overrides]
  except FileNotFoundError as missing:
    run_log.exit_with_error(program, missing)
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file(
      CONFIG_FLAG, None, "config file", flag_values=flag_values, sys_argv=argv
  )
  run_log.parse_flags_or_exit(program, CONFIG_FLAG, flag_values)(argv)
  return flag_values[CONFIG_FLAG].value


def enable_compilation_cache() -> str | None:
  """Points JAX's persistent compilation cache at $JAXVQA_CACHE/xla (default ~/.cache/jaxvqa/xla)
  on a GPU or TPU, or at JAXVQA_COMPILATION_CACHE=DIR on any device, so a resumed run loads its
  step instead of compiling it again; returns the directory, or None when there is none.

  A cache the process already has (JAX_COMPILATION_CACHE_DIR, or one set in this process) is
  kept: switching directories mid-process would mix two caches' programs. On the CPU there is none
  unless asked for: JAX 0.10.2 aborted and crashed while writing and compiling CPU programs beside
  its cache in a long process of many programs (the test suite, 2026-12-07, three times), and a
  CPU compiles the small models that run there in under a minute. JAXVQA_COMPILATION_CACHE=off:
  none anywhere."""
  import jax

  from jaxvqa.data import demo
  from jaxvqa.train import parallel

  chosen = os.environ.get("JAXVQA_COMPILATION_CACHE", "")
  if chosen.lower() == "off":
    return None
  if not chosen and jax.config.jax_compilation_cache_dir:
    return jax.config.jax_compilation_cache_dir
  if not chosen:
    parallel.initialize_distributed()  # before the backend starts, as multi-process JAX needs
    if jax.default_backend() == "cpu":
      return None
  directory = chosen or str(demo.cache_dir() / "xla")
  jax.config.update("jax_compilation_cache_dir", directory)
  return directory


def run(config: ml_collections.ConfigDict, workdir: str, program: str) -> None:
  """Trains what `config` asks for in `workdir`; every stop the user can act on ends `program`
  with one line and train.py's exit status (its docstring)."""
  run_log.ignore_closed_event_loop_callbacks()
  run_log.configure_logging()  # before the backend starts and says it found no TPU
  enable_compilation_cache()
  from jaxvqa import config as config_lib
  from jaxvqa.train import checkpointing

  try:
    if "kfold" in config:  # configs/kfold.py: every variant on every fold (jaxvqa/kfold/)
      from jaxvqa.kfold import protocol as kfold

      kfold.run_kfold(config, workdir)
    elif "protocol" in config:  # configs/protocols.py: a public set's standard protocol
      from jaxvqa.evaluate import protocols

      protocols.run_protocol(config, workdir)
    elif "distill" in config:  # configs/distill.py: the teacher's features into the SwinV2
      from jaxvqa.distill import loop

      loop.run_distillation(config, workdir)
    else:
      # Imported here: the K-fold and distillation paths need neither TFDS nor Grain.
      from jaxvqa.train import trainer

      trainer.train_and_evaluate(config, workdir)
  except run_log.TrainingInterrupted as stop:
    print(f"{program}: {stop}", file=sys.stderr)
    sys.exit(128 + stop.signum)
  except KeyboardInterrupt:
    # Outside the training steps (the final evaluation, loading data): every save made so far
    # is whole, so a rerun resumes from the newest.
    print(
        f"{program}: interrupted (Ctrl-C); the checkpoints saved so far are kept: rerun the same "
        "command to resume",
        file=sys.stderr,
    )
    sys.exit(130)
  except (
      config_lib.ConfigError,
      checkpointing.CheckpointError,
      checkpointing.WorkdirLockedError,
  ) as error:
    run_log.exit_with_error(program, error)

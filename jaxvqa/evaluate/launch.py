"""Evaluating a run from a command line: the `--config.data.<field>=v` overrides and the errors the
user can act on. `eval.py` and `jaxvqa eval` both go through here, so they accept the same
overrides and stop with the same exit status. Importing this module imports no JAX.
"""

from __future__ import annotations

from typing import Any

from jaxvqa.train import run_log

OVERRIDE = "--config."  # --config.data.<field>=value: a data field of the run's saved config


def config_overrides(overrides: list[str], program: str) -> dict[str, Any]:
  """`--config.a.b=v` arguments as {"a.b": v}, typed and checked against configs/default.py's
  schema (the fields every run's config.json has); an unknown field ends `program` with one line."""
  if not overrides:
    return {}
  from absl import flags
  from ml_collections import config_flags

  from configs import default

  argv = [program, *overrides]
  flag_values = flags.FlagValues()
  try:  # the flag reads the overrides' field names from `sys_argv` as it is defined
    config_flags.DEFINE_config_dict(
        "config", default.get_config(), "the run's config", flag_values=flag_values, sys_argv=argv
    )
  except (AttributeError, KeyError) as unknown:
    run_log.exit_with_error(program, run_log.unknown_field_message(unknown, argv, "config"))
  run_log.parse_flags_or_exit(program, "config", flag_values)(argv)
  return config_flags.get_override_values(flag_values["config"])


def run(
    workdir: str,
    *,
    split: str,
    which: str,
    ema: bool,
    out_dir: str | None,
    overrides: dict[str, Any],
    batch_size: int | None,
    program: str,
) -> None:
  """Evaluates `workdir`'s checkpoint and prints the report (checkpoint_report.main); a bad flag,
  config field, workdir or checkpoint ends `program` with one line and exit status 2."""
  run_log.ignore_closed_event_loop_callbacks()
  batch = {"per_device_batch": batch_size} if batch_size else {}
  from jaxvqa.evaluate import checkpoint_report
  from jaxvqa.train import checkpointing

  try:
    checkpoint_report.main(
        workdir,
        split=split,
        which=which,
        ema=ema,
        out_dir=out_dir,
        overrides=overrides,
        **batch,
    )
  except (checkpointing.CheckpointError, FileNotFoundError, ValueError) as error:
    # ValueError covers jaxvqa.config.ConfigError, a refused override, an unknown split or which.
    run_log.exit_with_error(program, error)

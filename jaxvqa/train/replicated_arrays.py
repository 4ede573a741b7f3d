"""How Orbax writes a replicated array: whole, by its first replica."""

import logging

import jax
import orbax.checkpoint as ocp


def write_replicated_arrays_whole() -> None:
  """A replicated array (a data-parallel run's parameters and optimizer state) is written whole by
  its first replica. Orbax's default splits it into one slice per device, each slice a compiled
  program per shape: 18 of a tiny run's 20 s of saving on 8 CPU devices (the tests' mesh), for
  nothing, since the weights of the models here are small enough for one writer."""
  absl_logger = logging.getLogger("absl")
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)  # Orbax warns of any override, this intended one included
  try:
    ocp.type_handlers.register_type_handler(
        jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False), override=True
    )
  finally:
    absl_logger.setLevel(level)

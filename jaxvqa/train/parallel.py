"""Device mesh and shardings for data parallelism: batch axis sharded, parameters replicated.

Everything here is about placing arrays; nothing knows about losses or models. The trainer jits its
steps with these shardings, so XLA inserts the gradient all-reduce itself and losses are computed over
the global batch: a run on 1 device and on 8 gives the same numbers.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def initialize_distributed() -> None:
  """Starts multi-host JAX when the launcher says this is one process of several.

  `jax.distributed.initialize()` discovers the coordinator on TPU pods, SLURM and Open MPI; a plain
  multi-process GPU launch sets JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID.
  A single process does nothing; a second call neither.
  """
  if jax.distributed.is_initialized():
    return
  if int(os.environ.get("JAX_NUM_PROCESSES", "1")) > 1 or "SLURM_NTASKS" in os.environ:
    jax.distributed.initialize()
    logging.info("process %d of %d", jax.process_index(), jax.process_count())


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh over the first `num_devices` devices (all by default), axis DATA_AXIS."""
  devices = jax.devices()
  if num_devices is not None:
    if not 1 <= num_devices <= len(devices):
      raise ValueError(f"asked for {num_devices} devices, {len(devices)} available")
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the data axis, other axes whole."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh, field: str) -> None:
  devices = mesh.devices.size
  if global_batch_size % devices:
    raise ValueError(
        f"{field}={global_batch_size} is not divisible by the {devices} devices of the mesh; "
        "choose a batch size that is a multiple of the device count"
    )


def global_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """This process's slice of the batch → global arrays sharded over the data axis.

  With one process the local batch is the global batch; with several, each contributes its
  contiguous slice (the loader's per-process shard) and the result spans all of them.
  """
  sharding = batch_sharded(mesh)
  return {
      key: jax.make_array_from_process_local_data(sharding, np.asarray(value))
      for key, value in local_batch.items()
  }


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places every leaf of `tree` on all devices of the mesh."""
  return jax.device_put(tree, replicated(mesh))

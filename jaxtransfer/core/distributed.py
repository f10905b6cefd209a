"""One code path for 1..N devices on 1..M processes (hosts), as big_vision.

Every process runs the same program. `jax.jit` works on global arrays over a
1-D mesh of all devices of all processes (training.make_mesh): parameters,
optimizer state and the uint8 dataset are replicated, and each step's batch
is sharded along the mesh's 'data' axis, so each device gathers and
processes its slice of the global batch from its own copy of the data.

Only the primary process (index 0) writes files of its own (config.json,
metrics.jsonl, study.json, reports) and shows progress; every process takes
part in orbax checkpointing, as orbax requires.
"""

from __future__ import annotations

import os
from typing import Any

from absl import logging
import jax
import numpy as np


def initialize(coordinator_address: str | None = None,
               num_processes: int | None = None,
               process_id: int | None = None) -> None:
  """Starts JAX's distributed runtime when the run spans several processes.

  Explicit arguments (launch.sh passes them) win. Inside a SLURM job step or
  an Open MPI job of several tasks, or on a multi-host Cloud TPU slice,
  `jax.distributed.initialize()` finds the coordinator itself. Otherwise:
  one process, nothing to do.
  """
  explicit = num_processes is not None and num_processes > 1
  if not explicit and not _cluster_detected():
    return
  # Collectives between CPU processes (tests, laptops) go through gloo; on
  # GPU/TPU the accelerator's own collectives are used and this is unused.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if explicit:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes,
                               process_id=process_id)
  else:
    jax.distributed.initialize()
  logging.info("Process %d of %d; %d local of %d devices",
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())


def _cluster_detected() -> bool:
  env = os.environ
  slurm = int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_STEP_ID" in env
  mpi = int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
  tpu_pod = "," in env.get("TPU_WORKER_HOSTNAMES", "")
  return slurm or mpi or tpu_pod


def is_primary() -> bool:
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits for every process (no-op with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def broadcast_int(value: int) -> int:
  """Process 0's `value` on every process (itself with one process): a
  decision only process 0 can make, such as which unit of a study to take."""
  if jax.process_count() == 1:
    return int(value)
  from jax.experimental import multihost_utils
  return int(multihost_utils.broadcast_one_to_all(np.int32(value)))


def put_replicated(array: np.ndarray, sharding) -> jax.Array:
  """A host array (the same on every process) as a global replicated array."""
  array = np.asarray(array)
  return jax.make_array_from_callback(array.shape, sharding,
                                      lambda index: array[index])


def fetch(tree: Any) -> Any:
  """Replicated global arrays -> numpy, on every process (device_get needs
  fully addressable arrays; a replicated one has a full copy locally)."""
  def one(leaf):
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      return np.asarray(leaf.addressable_data(0))
    return np.asarray(jax.device_get(leaf))
  return jax.tree.map(one, tree)

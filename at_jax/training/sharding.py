"""Data parallelism over a device mesh: one code path for 1 CPU, N local devices and N hosts.

The batch is sharded over the mesh axis ``data``; parameters, optimizer state and small datasets are
replicated. ``jax.jit`` over such arrays lets XLA insert the collectives, so batch-norm statistics and the
loss are computed over the global batch: the same run on 1 or N devices gives the same numbers up to the
order of floating-point additions.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from at_jax.errors import DeviceError

DATA_AXIS = "data"


def initialize_distributed() -> None:
    """Calls ``jax.distributed.initialize`` when launched as one process of a multi-host job, then checks
    and logs what this process sees (:func:`check_devices`).

    A multi-host launch is recognised by ``JAX_COORDINATOR_ADDRESS`` with ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID`` (set by ``launch/multihost.sh``), or by ``AT_JAX_DISTRIBUTED=1`` on the clusters
    whose environment ``jax.distributed.initialize()`` detects itself (SLURM: one process per GPU, each using
    the GPU of its ``SLURM_LOCALID``, or those listed in ``AT_JAX_LOCAL_DEVICE_IDS`` when the job binds GPUs to
    tasks itself; TPU pods; Open MPI). Single-process runs skip it.
    """
    if os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("AT_JAX_DISTRIBUTED") == "1":
        # CPU processes need a collectives backend of their own (GPUs and TPUs ignore this setting).
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize(
            coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["JAX_PROCESS_ID"]))
    elif os.environ.get("AT_JAX_DISTRIBUTED") == "1":
        device_ids = os.environ.get("AT_JAX_LOCAL_DEVICE_IDS", "")
        jax.distributed.initialize(local_device_ids=[int(i) for i in device_ids.split(",")] if device_ids else None)
    check_devices(os.environ.get(EXPECTED_DEVICES_VARIABLE))


#: Environment variable: how many devices each process must see (the launch scripts set it).
EXPECTED_DEVICES_VARIABLE = "AT_JAX_LOCAL_DEVICES"


def check_devices(expected_local: str | int | None) -> None:
    """Logs this process's index, the process count and its local / global device counts; raises
    :class:`DeviceError` when it sees fewer local devices than ``expected_local`` (when given)."""
    local, total = jax.local_device_count(), jax.device_count()
    log = logging.info if jax.process_count() > 1 or total > 1 else logging.debug  # quiet on one CPU
    log("process %d of %d: %d local devices (%s), %d devices in all", jax.process_index(),
                 jax.process_count(), local, jax.default_backend(), total)
    if expected_local in (None, ""):
        return
    try:
        expected = int(expected_local)
    except ValueError:
        raise DeviceError(f"{EXPECTED_DEVICES_VARIABLE} must be a whole number, got {expected_local!r}") from None
    if local < expected:
        raise DeviceError(f"process {jax.process_index()} of {jax.process_count()} sees {local} "
                          f"{jax.default_backend()} device(s), {expected} expected ({EXPECTED_DEVICES_VARIABLE}); "
                          "check the job's GPU allocation (e.g. --gpus-per-node) and CUDA_VISIBLE_DEVICES")


def make_mesh(devices: list | None = None) -> Mesh:
    """A one-axis mesh named ``data`` over all (global) devices."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Sharding that splits the leading (batch) axis over the ``data`` axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places host arrays (identical on every process) on all devices of the mesh."""
    sharding = replicated(mesh)

    def place(array):
        array = np.asarray(array)
        return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])

    return jax.tree.map(place, tree)


def host_local_to_global(local_batch: Any, mesh: Mesh, batch_axis: int = 0) -> Any:
    """Assembles per-process slices of a batch into global arrays sharded over ``data`` on ``batch_axis``.

    Each process passes its own contiguous slice (``at_jax.data.streaming.ProcessPart``); on one process this is a plain
    sharded ``device_put``.
    """
    sharding = NamedSharding(mesh, PartitionSpec(*([None] * batch_axis), DATA_AXIS))
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                        local_batch)


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """Raises ``ValueError`` unless the global batch splits evenly over devices and processes."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if batch_size % mesh.size:
        raise ValueError(f"batch_size {batch_size} is not divisible by the device count {mesh.size}")
    if batch_size % jax.process_count():
        raise ValueError(f"batch_size {batch_size} is not divisible by the process count "
                         f"{jax.process_count()}")

"""TPU topologies described on a machine without TPUs: the devices to build a mesh over, and their memory.

``jax.experimental.topologies.get_topology_desc(topology_name="v5e:4x4", platform="tpu")`` gives compile-only
devices when libtpu is installed (``pip install -e ".[tpu-compile]"``). A topology name is
``<generation>:<chips per axis>`` (``v5e:1x1``, ``v5e:2x2``, ``v5p:2x2x1``, ``v6e:16x16``); ``num_slices`` > 1 describes
that many slices joined by the data-centre network (the mesh's data axis spans them).
"""
from __future__ import annotations

import dataclasses
import glob
import importlib.metadata
import importlib.util
import math
import os
import re

from at_jax.errors import ConfigError, UserError

GIB = 1024 ** 3
#: High-bandwidth memory per chip, from the Cloud TPU system-architecture pages (v4, v5e, v5p, v6e).
HBM_PER_CHIP = {"v4": 32 * GIB, "v5e": 16 * GIB, "v5p": 95 * GIB, "v6e": 32 * GIB}
INSTALL = 'pip install -e ".[tpu-compile]" (jax[tpu] of the installed jax version: libtpu)'
#: Chips of libtpu's default host (2x2x1); topologies with fewer chips are described as one host of their size.
FULL_HOST_CHIPS = 4
_NAME = re.compile(r"^(v\d+[a-z]*):(\d+(?:x\d+)*)$")


class TopologyError(UserError, ValueError):
    """A topology name or slice count that cannot be compiled for, or libtpu missing."""


@dataclasses.dataclass(frozen=True)
class Topology:
    """A described topology: its name, slices, compile-only devices, chips and each chip's memory."""
    name: str
    num_slices: int
    devices: tuple
    chips: int                 # all slices
    hbm_per_chip: int          # bytes

    @property
    def generation(self) -> str:
        return self.name.split(":")[0]

    @property
    def label(self) -> str:
        """``v5e:2x4``, or ``v5e:2x4 x2 slices``."""
        return f"{self.name} x{self.num_slices} slices" if self.num_slices > 1 else self.name

    @property
    def devices_per_chip(self) -> int:
        return max(1, len(self.devices) // self.chips)

    @property
    def memory_per_device(self) -> int:
        """What one device (a chip, or one of its cores where the topology lists cores) can hold."""
        return self.hbm_per_chip // self.devices_per_chip


def parse_name(name: str) -> tuple[str, int]:
    """(generation, chips of one slice) of a topology name; raises :class:`TopologyError`."""
    match = _NAME.match(name or "")
    if not match:
        raise TopologyError(f"--topology must look like v5e:2x2, v5p:2x2x1 or v6e:16x16, got {name!r}")
    generation = match.group(1)
    if generation not in HBM_PER_CHIP:
        raise TopologyError(f"unknown TPU generation {generation!r} in {name!r}; known: {', '.join(HBM_PER_CHIP)}")
    return generation, math.prod(int(size) for size in match.group(2).split("x"))


def host_bounds(name: str) -> tuple[int, int, int]:
    """The chips of a topology name per axis, as three (``v5e:2x1`` -> (2, 1, 1))."""
    sizes = [int(size) for size in name.split(":")[1].split("x")]
    return tuple(sizes + [1] * (3 - len(sizes)))[:3]


def require_libtpu() -> None:
    """Raises :class:`TopologyError` (one line: what to install) unless libtpu is importable."""
    if importlib.util.find_spec("libtpu") is None:
        raise TopologyError(f"compiling for a TPU topology needs XLA's TPU compiler: {INSTALL}")


def libtpu_version() -> str:
    """``libtpu 0.0.42.1``: the compiler that compiles (the first ``libtpu`` on the path)."""
    try:
        return f"libtpu {importlib.metadata.version('libtpu')}"
    except importlib.metadata.PackageNotFoundError:
        return "libtpu"


def on_tpu_host() -> bool:
    """Whether this machine has TPU chips (``/dev/accel*``: v4, v5e; ``/dev/vfio/<n>``: v5p, v6e)."""
    return bool(glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"))


def quiet_libtpu() -> None:
    """On a machine without TPUs, tells libtpu so before JAX starts a backend: no warnings about the missing TPU
    metadata, and no lock file (several compilations may run at once). On a TPU host nothing is changed; values
    already set are kept."""
    if on_tpu_host():
        return
    for name, value in {"TPU_SKIP_MDS_QUERY": "1", "TPU_ACCELERATOR_TYPE": "v5litepod-1",
                        "TPU_WORKER_HOSTNAMES": "localhost", "TPU_WORKER_ID": "0",
                        "ALLOW_MULTIPLE_LIBTPU_LOAD": "1"}.items():
        os.environ.setdefault(name, value)


def describe(name: str, num_slices: int = 1) -> Topology:
    """The topology ``name`` with ``num_slices`` slices; raises :class:`TopologyError` in one line."""
    generation, chips = parse_name(name)
    if num_slices < 1:
        raise ConfigError(f"--num-slices must be >= 1, got {num_slices}")
    require_libtpu()
    from jax.experimental import topologies  # pylint: disable=import-outside-toplevel
    options = {"num_slices": num_slices} if num_slices > 1 else {}
    if chips < FULL_HOST_CHIPS:   # libtpu's default host holds 2x2x1 chips: a smaller slice is one smaller host
        options["chips_per_host_bounds"] = host_bounds(name)
    try:
        description = topologies.get_topology_desc(topology_name=name, platform="tpu", **options)
    except Exception as error:  # pylint: disable=broad-except  (libtpu's messages for an impossible shape)
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise TopologyError(f"libtpu cannot describe topology {name!r} x{num_slices}: {first_line}") from None
    return Topology(name, num_slices, tuple(description.devices), chips * num_slices, HBM_PER_CHIP[generation])

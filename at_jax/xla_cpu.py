"""XLA:CPU settings that ``import at_jax`` applies before JAX starts its backends.

jaxlib 0.10.2 (the version checked) has XLA:CPU hand every eligible convolution to YNNPACK
(``--xla_cpu_experimental_ynn_fusion_type`` includes ``individual_convolution`` by default). For the
small-channel CNNs of this library that is a large slowdown, above all in the backward pass: the
weight gradient of a conv is itself a convolution whose "kernel" is the whole feature map (e.g. a
32x32 window producing a 3x3 output), which YNNPACK runs 2-13x slower than XLA's Eigen convolution
(batch 128: H32 16->16 3x3 61 ms vs 20 ms, H32 32->32 568 ms vs 44 ms; the WRN-16-2 -> WRN-16-1 AT
step on 2 CPU cores: 1.41 s -> 0.64 s, PyTorch eager 0.68 s in the same sitting; BENCHMARKS.md,
"CPU convolution kernels (2026-11-21, session 2)"). So at import,
unless told otherwise, at_jax appends ``CPU_XLA_FLAGS`` to ``XLA_FLAGS``: convolutions go back to
Eigen, YNNPACK keeps the dots, reductions and elementwise fusions it is good at.

The flags only name ``xla_cpu_*`` options: GPU and TPU compilation is unaffected. They are added only

* when ``AT_JAX_XLA_CPU_FLAGS`` is not ``0`` (set it to ``0`` to leave ``XLA_FLAGS`` alone),
* when ``XLA_FLAGS`` does not already set ``--xla_cpu_experimental_ynn_fusion_type`` (a user's own
  choice wins),
* when jaxlib is 0.10 or newer (older versions may not know the flag, and XLA aborts on unknown
  flags), and
* before JAX has initialised a backend: XLA reads ``XLA_FLAGS`` once, at backend start. Importing
  ``at_jax`` after the first JAX computation leaves the process as it is (``apply_cpu_flags``
  returns False); import ``at_jax`` first, or export the flags yourself.
"""
from __future__ import annotations

import os
from typing import MutableMapping

#: Appended to ``XLA_FLAGS`` by :func:`apply_cpu_flags`.
CPU_XLA_FLAGS: tuple[str, ...] = ("--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",)
#: Environment variable; ``0`` disables :func:`apply_cpu_flags`.
OPT_OUT_VARIABLE = "AT_JAX_XLA_CPU_FLAGS"
#: The first jaxlib for which the flags were checked (YNNPACK convolutions are on by default there).
MIN_JAXLIB = (0, 10)


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _backends_started() -> bool:
    try:
        from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel
        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # private API moved: assume it is not too late
        return False


def _jaxlib_version() -> str:
    try:
        import jaxlib.version  # pylint: disable=import-outside-toplevel
        return jaxlib.version.__version__
    except (ImportError, AttributeError):
        return "0"


def apply_cpu_flags(environ: MutableMapping[str, str] | None = None) -> bool:
    """Appends :data:`CPU_XLA_FLAGS` to ``environ['XLA_FLAGS']`` (default ``os.environ``) under the
    conditions in the module docstring; returns True when it did."""
    environ = os.environ if environ is None else environ
    if environ.get(OPT_OUT_VARIABLE, "1").strip() == "0":
        return False
    existing = environ.get("XLA_FLAGS", "")
    if "--xla_cpu_experimental_ynn_fusion_type" in existing:
        return False
    if _version_tuple(_jaxlib_version()) < MIN_JAXLIB or _backends_started():
        return False
    environ["XLA_FLAGS"] = " ".join([existing.strip(), *CPU_XLA_FLAGS]).strip()
    return True

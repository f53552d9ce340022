"""What at_jax does differently on a CPU, stated once: XLA:CPU flags, steps per call, multi-run mode.

- **XLA:CPU flags.** jaxlib 0.10 has XLA:CPU hand every eligible convolution to YNNPACK
  (``--xla_cpu_experimental_ynn_fusion_type`` includes ``individual_convolution`` by default). For the
  small-channel CNNs of this library that is a large slowdown, above all in the backward pass (batch 128:
  H32 32->32 3x3 weight gradient 568 ms vs 44 ms with XLA's Eigen convolution; the WRN-16-2 -> WRN-16-1 AT
  step on 2 CPU cores 1.41 s -> 0.64 s; BENCHMARKS.md, "CPU convolution kernels"). :data:`CPU_XLA_FLAGS`
  sends convolutions back to Eigen and leaves YNNPACK the dots and elementwise fusions. The flags name only
  ``xla_cpu_*`` options (GPU and TPU compilation is unaffected).

  ``import at_jax`` changes nothing. The entry points (``python -m at_jax.train``, ``at_jax.experiment``,
  the benchmarks) call :func:`apply_xla_cpu_flags` before JAX starts a backend; it appends the flags to
  ``XLA_FLAGS`` only when ``AT_JAX_XLA_CPU_FLAGS`` is not ``0``, ``XLA_FLAGS`` does not already set the
  option (a user's own choice wins), and the installed jaxlib accepts the flags: it is asked, by starting
  its CPU backend with them in a child process (XLA aborts on a flag it does not know). The answer is cached
  per jaxlib installation in ``$XDG_CACHE_HOME/at_jax`` (``~/.cache/at_jax``).
- **Train steps per compiled call**: 1 on CPU (XLA:CPU runs convolutions inside a loop body many times
  slower, jax-ml/jax#12868), 10 on accelerators (fewer host round trips).
- **Multi-run mode** (``config.parallel_mode = "auto"``): "unroll" on CPU, where a vmapped step of
  per-run weights becomes grouped convolutions (0.55x the throughput of sequential runs; unrolled 0.89x;
  BENCHMARKS.md), "vmap" on one accelerator device (a mesh of several unrolls too: multi_run.resolve_mode).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Callable, MutableMapping, Sequence

#: Appended to ``XLA_FLAGS`` by :func:`apply_xla_cpu_flags`.
CPU_XLA_FLAGS: tuple[str, ...] = ("--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",)
#: Environment variable; ``0`` leaves ``XLA_FLAGS`` alone.
OPT_OUT_VARIABLE = "AT_JAX_XLA_CPU_FLAGS"
#: Train steps per compiled call (one ``lax.scan``) when ``config.steps_per_call`` is 0.
STEPS_PER_CALL = {"cpu": 1, "accelerator": 10}
#: How the runs of a multi-run job share a program when ``config.parallel_mode`` is "auto".
MULTI_RUN_MODE = {"cpu": "unroll", "accelerator": "vmap"}


def _backend_kind(platform: str | None = None) -> str:
    """"cpu" or "accelerator": of ``platform`` (a device's, e.g. "tpu"), else of JAX's default backend."""
    if platform is None:
        import jax  # pylint: disable=import-outside-toplevel
        platform = jax.default_backend()
    return "cpu" if platform == "cpu" else "accelerator"


def default_steps_per_call(platform: str | None = None) -> int:
    return STEPS_PER_CALL[_backend_kind(platform)]


def default_multi_run_mode(platform: str | None = None) -> str:
    return MULTI_RUN_MODE[_backend_kind(platform)]


def _cache_path() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "at_jax", "xla_cpu_flags.json")


def _jaxlib_identity() -> str:
    import jaxlib  # pylint: disable=import-outside-toplevel
    from jaxlib import version  # pylint: disable=import-outside-toplevel
    return f"{version.__version__}@{os.path.dirname(os.path.abspath(jaxlib.__file__))}"


def jaxlib_accepts(flags: Sequence[str]) -> bool:
    """Whether the installed jaxlib starts its CPU backend with ``flags`` in ``XLA_FLAGS`` (asked in a child
    process, since XLA aborts on an unknown flag); cached per jaxlib installation and flags."""
    try:
        key = f"{_jaxlib_identity()} {' '.join(flags)}"
    except ImportError:  # no jaxlib here: nothing to configure
        return False
    path = _cache_path()
    try:
        with open(path) as file:
            cache = json.load(file)
    except (OSError, ValueError):
        cache = {}
    if isinstance(cache.get(key), bool):
        return cache[key]
    env = dict(os.environ, XLA_FLAGS=" ".join(flags), JAX_PLATFORMS="cpu", **{OPT_OUT_VARIABLE: "0"})
    try:
        result = subprocess.run([sys.executable, "-c", "import jax; jax.devices('cpu')"], env=env,
                                capture_output=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    accepted = result.returncode == 0
    if not accepted and b"Unknown flag" not in result.stderr:
        return False  # the child failed for another reason: no answer to keep
    _write_cache(path, dict(cache, **{key: accepted}))
    return accepted


def _write_cache(path: str, cache: dict) -> None:
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temporary, "w") as file:
            json.dump(cache, file)
        os.replace(temporary, path)
    except OSError:
        pass  # no cache: asked again next time


def apply_xla_cpu_flags(environ: MutableMapping[str, str] | None = None,
                        accepts: Callable[[Sequence[str]], bool] = jaxlib_accepts) -> bool:
    """Appends :data:`CPU_XLA_FLAGS` to ``environ['XLA_FLAGS']`` (default ``os.environ``) under the
    conditions in the module docstring; returns True when it did. Call it before JAX starts a backend
    (XLA reads ``XLA_FLAGS`` once)."""
    environ = os.environ if environ is None else environ
    if environ.get(OPT_OUT_VARIABLE, "1").strip() == "0":
        return False
    existing = environ.get("XLA_FLAGS", "")
    if any(flag.split("=")[0] in existing for flag in CPU_XLA_FLAGS):
        return False
    if not accepts(CPU_XLA_FLAGS):
        return False
    environ["XLA_FLAGS"] = " ".join([existing.strip(), *CPU_XLA_FLAGS]).strip()
    return True

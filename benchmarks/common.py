"""Shared pieces of the benchmark scripts: timing, machine facts, result printing.

Timing rule (both frameworks): the work is already on the device, ``warmup`` calls are run and
discarded (compilation included there), then ``repeats`` calls are timed one by one with the device
synchronised after each; the figure is the median call time.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def apply_xla_cpu_flags() -> bool:
    """The at_jax entry points' XLA:CPU setting (``at_jax.training.cpu_defaults``); call it before the first
    JAX computation. ``AT_JAX_XLA_CPU_FLAGS=0`` leaves XLA's default."""
    sys.path.insert(0, REPO_ROOT)
    from at_jax.training.cpu_defaults import apply_xla_cpu_flags as apply  # pylint: disable=C0415
    return apply()


def time_calls(call: Callable[[], None], *, warmup: int, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` timed calls after ``warmup`` untimed ones; ``call`` must
    synchronise the device before it returns."""
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return seconds


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def load_average() -> list[float]:
    """The 1/5/15-minute load averages (``uptime``); other processes share this machine."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return []


def host_peak_rss_bytes() -> int:
    """Peak resident memory of this process (the CPU 'device' memory when running on the host)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine_facts() -> dict:
    return {"host": platform.node(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "load_average": load_average(), "commit": git_commit(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def emit(result: dict, as_json: bool) -> None:
    """One JSON object on stdout (``--json``) or ``key: value`` lines."""
    if as_json:
        print(json.dumps(result, sort_keys=True))
    else:
        for key in sorted(result):
            print(f"{key}: {result[key]}")


def run_json(argv: list[str], timeout: float = 1800.0) -> dict:
    """Runs a benchmark script in a fresh interpreter and parses the last JSON line of its stdout."""
    process = subprocess.run([sys.executable] + argv, capture_output=True, text=True, timeout=timeout,
                             cwd=REPO_ROOT)
    lines = [line for line in process.stdout.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        tail = process.stderr.strip().splitlines()[-3:]
        return {"error": f"exit {process.returncode}: {' | '.join(tail)}"}
    return json.loads(lines[-1])


def format_bytes(count: int | None) -> str:
    if not count:
        return "n/a"
    return f"{count / 2**20:.0f} MiB"

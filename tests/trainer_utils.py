"""Shared helpers for the trainer tests: the tiny config and running the CLI in a subprocess."""
import hashlib
import json
import os
import subprocess
import sys
import time

import ml_collections

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CONFIG = os.path.join(REPO, "configs", "tiny.py")


def tiny_config(**overrides) -> ml_collections.ConfigDict:
    """configs/tiny.py with dotted-key overrides, e.g. tiny_config(**{"loss.at_beta": 1e3})."""
    sys.path.insert(0, os.path.join(REPO, "configs"))
    try:
        import tiny  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.pop(0)
    config = tiny.get_config()
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    return config


def run_cli(args, devices: int | None = None, timeout: int = 600, **popen_kwargs):
    """``python -m at_jax.train ARGS`` in a fresh process (optionally with N fake CPU devices)."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if devices:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    command = [sys.executable, "-m", "at_jax.train", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO,
                          **popen_kwargs)


def cli_overrides(**overrides) -> list[str]:
    return [f"--config.{key}={value}" for key, value in overrides.items()]


def metrics_records(workdir) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as file:
        return [json.loads(line) for line in file]


def deterministic_records(workdir) -> list[dict]:
    """metrics.jsonl without the wall-clock fields."""
    return [{k: v for k, v in record.items() if k != "images_per_second"}
            for record in metrics_records(workdir)]


def tree_digest(directory) -> dict:
    """sha256 of every file below ``directory`` (to show that nothing there was rewritten)."""
    digests = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            digests[os.path.relpath(path, directory)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return digests


def start_cli(args) -> subprocess.Popen:
    """``python -m at_jax.train ARGS`` started in the background (output discarded)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "at_jax.train", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(process: subprocess.Popen, condition, timeout: float = 300) -> None:
    """Polls ``condition()`` until it holds; fails if the process ended first or the time ran out."""
    deadline = time.time() + timeout
    while not condition():
        assert process.poll() is None, "the run ended before the condition held"
        assert time.time() < deadline, "timed out waiting for the run"
        time.sleep(0.02)


def checkpoint_steps(workdir) -> list[int]:
    """The finished checkpoint steps in ``workdir/checkpoints``."""
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return []
    return sorted(int(name) for name in os.listdir(directory) if name.isdigit())

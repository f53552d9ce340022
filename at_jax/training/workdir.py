"""The run directory: checks before anything is written, ``config.json``, resume compatibility."""
from __future__ import annotations

import os
from typing import Mapping

from at_jax.errors import WorkdirError
from at_jax.data.registry import source_of as data_source_of
from at_jax.models.registry import source_of
from at_jax.run_files import CONFIG_FILE, as_path, check_reachable, is_remote, read_json, write_json

# Keys whose change makes an existing checkpoint meaningless for this run.
RESUME_KEYS = ("model", "dataset.name")
# Keys of a parallel job (at_jax.parallel_runs) that must not change on resume, with their values in
# configs saved before they existed.
JOB_RESUME_KEYS = {"parallel_runs": 0, "parallel_sweep": "", "parallel_values": [], "parallel_seeds": 1}


def _lookup(config: Mapping, dotted: str):
    value = config
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def check_writable(workdir: str) -> None:
    """Raises unless ``workdir`` is (or can be made) a writable directory; creates nothing. A URL is checked
    for a storage backend (and, through it, that the location answers)."""
    if not workdir:
        raise WorkdirError("--workdir is required")
    path = check_reachable(workdir, role="workdir")
    if is_remote(workdir):
        if path.exists() and not path.is_dir():
            raise WorkdirError(f"workdir {workdir} exists and is not a directory")
        return
    workdir = os.fspath(path)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise WorkdirError(f"workdir {workdir} exists and is not a directory")
    probe = workdir
    while not os.path.exists(probe):
        parent = os.path.dirname(os.path.abspath(probe))
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise WorkdirError(f"workdir {workdir}: {probe} exists and is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise WorkdirError(f"workdir {workdir} is not writable")


def check_resume_compatible(workdir: str, config: Mapping) -> bool:
    """True when ``workdir`` holds an earlier run of the same model and data (to be resumed).

    Raises when it holds a run of another model or dataset, so that nothing there is overwritten.
    """
    path = as_path(workdir) / CONFIG_FILE
    if not path.exists():
        return False
    saved = read_json(path)
    if saved is None:
        raise WorkdirError(f"{path} is unreadable; use another --workdir")
    for key in RESUME_KEYS:
        if _lookup(saved, key) != _lookup(config, key):
            raise WorkdirError(f"workdir {workdir} holds a run with {key}={_lookup(saved, key)!r}, this config "
                               f"has {key}={_lookup(config, key)!r}; use another --workdir")
    for key, default in JOB_RESUME_KEYS.items():
        before, now = _job_value(saved, key, default), _job_value(config, key, default)
        if before != now:
            raise WorkdirError(f"workdir {workdir} holds a job with {key}={before!r}, this config has "
                               f"{key}={now!r}; use another --workdir")
    return True


def _job_value(config: Mapping, key: str, default):
    value = config.get(key, default)
    if value is None:
        value = default
    return list(value) if isinstance(value, (list, tuple)) else value


def save_config(workdir: str, config: Mapping, num_classes: int, num_train_examples: int | None = None) -> None:
    """Writes ``config.json`` atomically: the config plus the class count a teacher check needs and the
    training-set size (so that a finished run is recognised without loading its data)."""
    record = dict(config)
    record["num_classes"] = num_classes
    source = source_of(str(record.get("model", "")))
    if source:  # a user's model: the file that registers it, for processes that load this run later
        record["model_source"] = source
    dataset_source = data_source_of(str((record.get("dataset") or {}).get("name", "")))
    if dataset_source:  # a user's dataset, likewise (figures of this run rebuild its test images)
        record["dataset_source"] = dataset_source
    if num_train_examples is not None:
        record["num_train_examples"] = int(num_train_examples)
    write_json(as_path(workdir) / CONFIG_FILE, record, sort_keys=True, default=str)

"""Paths, and the files of a run directory (shared by training, experiments and figures).

Every path at_jax reads or writes goes through :func:`as_path`, an ``etils.epath.Path``: a local path, or
a URL such as ``gs://bucket/run`` when its backend is installed (``pip install 'at_jax[gcs]'`` adds gcsfs
for ``gs://``). A ``scheme://`` that no installed backend serves is refused in one line
(:class:`~at_jax.errors.PathError`) before anything is written, and never becomes a local folder.

A run's workdir holds ``config.json`` (its settings, plus ``num_classes`` and ``num_train_examples``),
``metrics.jsonl`` (one JSON object per log line), ``summary.json`` (when finished), ``checkpoints/``,
``tensorboard/`` and ``wandb/`` (its metric writers), ``figures/`` (the attention figure of a run with a teacher),
``attention/`` (attention maps while training, ``metrics.attention_every``: ``step_<step:08d>.npz`` and
``probe_images.npz``, :mod:`at_jax.training.attention_probe`) and, for a run of a multi-run job that diverged,
``stopped.json``. JSON and attention files are written atomically (a temporary file, then a rename), so a kill
never leaves a torn file.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping, Union

from etils import epath

from at_jax.errors import PathError

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
STOPPED_FILE = "stopped.json"
INPUT_STATE_DIR = "input_state"   # the streamed input pipeline's state at each checkpoint step
ATTENTION_DIR = "attention"       # attention maps while training: step_<step:08d>.npz, probe_images.npz
ATTENTION_IMAGES_FILE = "probe_images.npz"

PathLike = Union[str, os.PathLike]


def is_remote(path: PathLike) -> bool:
    """Whether ``path`` is a URL (``scheme://...``) rather than a local path."""
    return "://" in os.fspath(path)


def as_path(path: PathLike) -> epath.Path:
    """``path`` as an ``epath.Path`` (``~`` expanded); :class:`PathError` for a scheme with no backend."""
    text = os.fspath(path)
    if not is_remote(text):
        return epath.Path(os.path.expanduser(text))
    try:
        return epath.Path(text)
    except KeyError:
        scheme = text.split("://", 1)[0]
        raise PathError(f"no storage backend serves {scheme}:// ({text}); use a local path or "
                        f"gs:// (pip install 'at_jax[gcs]'), s3://, az://") from None


def absolute(path: PathLike) -> epath.Path:
    """An absolute ``epath.Path`` (URLs are absolute already)."""
    return as_path(path) if is_remote(path) else epath.Path(os.path.abspath(as_path(path)))


def check_reachable(path: PathLike, role: str = "path") -> epath.Path:
    """Refuses a URL whose storage backend is not installed (e.g. gs:// without gcsfs), in one line."""
    resolved = as_path(path)
    if is_remote(resolved):
        try:
            resolved.exists()
        except ImportError as error:
            raise PathError(f"{role} {path}: {error} (pip install 'at_jax[gcs]' for gs://)") from None
    return resolved


def save_png(figure: Any, out: PathLike, dpi: int) -> None:
    """Saves a matplotlib figure as PNG at ``out`` (local or a URL), creating its folder."""
    target = as_path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as file:
        figure.savefig(file, dpi=dpi, format="png")


def write_text(path: PathLike, text: str) -> None:
    """Writes ``text`` to ``path`` atomically (a temporary file, then a rename)."""
    target = as_path(path)
    temporary = target.parent / (target.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(target)


def attention_snapshot_path(run_dir: PathLike, step: int) -> epath.Path:
    """``run_dir/attention/step_<step:08d>.npz``: a run's attention maps at ``step``."""
    return as_path(run_dir) / ATTENTION_DIR / f"step_{int(step):08d}.npz"


def write_bytes(path: PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (a temporary file, then a rename), creating its folder."""
    target = as_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / (target.name + ".tmp")
    temporary.write_bytes(data)
    temporary.replace(target)


def write_json(path: PathLike, record: Mapping, **dump_options: Any) -> None:
    """Writes ``record`` as JSON to ``path`` atomically."""
    write_text(path, json.dumps(record, indent=2, **dump_options))


def read_json(path: PathLike) -> dict | None:
    """The JSON object in ``path``, or None when the file is missing or unreadable."""
    try:
        return json.loads(as_path(path).read_text())
    except (OSError, ValueError):
        return None


def read_metrics(path: PathLike) -> list[dict]:
    """All records of a ``metrics.jsonl`` file (a torn last line, from a kill mid-write, is skipped)."""
    records = []
    for line in as_path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records

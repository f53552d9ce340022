"""The files of a run directory and how they are read and written (shared by training, experiments, figures).

A run's workdir holds ``config.json`` (its settings, plus ``num_classes`` and ``num_train_examples``),
``metrics.jsonl`` (one JSON object per log line), ``summary.json`` (when finished), ``checkpoints/``,
``tensorboard/`` and, for a run of a multi-run job that diverged, ``stopped.json``. Writes are atomic
(a temporary file, then a rename), so a kill never leaves a torn JSON file.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
STOPPED_FILE = "stopped.json"


def write_json(path: str, record: Mapping, **dump_options: Any) -> None:
    """Writes ``record`` as JSON to ``path`` atomically (a temporary file, then a rename)."""
    with open(path + ".tmp", "w") as file:
        json.dump(record, file, indent=2, **dump_options)
    os.replace(path + ".tmp", path)


def read_json(path: str) -> dict | None:
    """The JSON object in ``path``, or None when the file is missing or unreadable."""
    try:
        with open(path) as file:
            return json.load(file)
    except (OSError, ValueError):
        return None


def read_metrics(path: str) -> list[dict]:
    """All records of a ``metrics.jsonl`` file (a torn last line, from a kill mid-write, is skipped)."""
    records = []
    with open(path) as file:
        for line in file:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records

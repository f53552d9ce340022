"""Run metrics: ``metrics.jsonl``, TensorBoard event files (tensorboardX, no TensorFlow), progress with ETA.

Also the guard that stops a run whose loss turned non-finite.
"""
from __future__ import annotations

import json
import math
import sys
import time
from typing import Mapping, TextIO

import numpy as np
from absl import logging

from at_jax.errors import NonFiniteLossError

from at_jax.run_files import METRICS_FILE, as_path, is_remote, read_metrics, write_text




def check_finite(step: int, scalars: Mapping[str, float]) -> None:
    """Raises :class:`NonFiniteLossError` naming the first non-finite scalar."""
    for name, value in scalars.items():
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"loss term {name!r} became {value} at step {step}; the run stopped and the last "
                "good checkpoint is kept (lower the learning rate or a loss weight and re-run)")


def _to_python(value):
    if isinstance(value, (np.generic, np.ndarray)):
        return value.item()
    return value


class MetricWriter:
    """Writes one JSON object per line to ``workdir/metrics.jsonl`` and the same scalars to TensorBoard.

    On resume from ``resume_step``, lines of steps after it (written before an interruption) are dropped,
    so that a resumed run's file equals an uninterrupted run's. A local file is appended to; object stores
    (gs://, which cannot append) get the whole file rewritten at each write (metrics files are small).
    TensorBoard events on gs:// use tensorboardX's own writer (it needs google-cloud-storage).
    """

    def __init__(self, workdir: str, resume_step: int = 0, tensorboard: bool = True,
                 enabled: bool = True):
        self.path = as_path(workdir) / METRICS_FILE
        self.enabled = enabled
        self._append = not is_remote(workdir)
        self._records: list[dict] = []    # the file's lines, kept to rewrite it (object stores) on each write
        self._summary_writer = None
        if not enabled:
            return
        if self.path.exists():
            self._records = [line for line in read_metrics(self.path) if line.get("step", 0) <= resume_step]
            self._rewrite()
        if tensorboard:
            from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
            self._summary_writer = SummaryWriter(str(as_path(workdir) / "tensorboard"),
                                                 purge_step=resume_step + 1 if resume_step else None)

    def _rewrite(self) -> None:
        write_text(self.path, "".join(json.dumps(record) + "\n" for record in self._records))

    def write(self, step: int, scalars: Mapping[str, float], **extra) -> dict:
        record = {"step": int(step)}
        record.update({name: _to_python(value) for name, value in scalars.items()})
        record.update({name: _to_python(value) for name, value in extra.items()})
        if not self.enabled:
            return record
        if self._append:
            with self.path.open("a") as file:
                file.write(json.dumps(record) + "\n")
        else:
            self._records.append(record)
            self._rewrite()
        if self._summary_writer is not None:
            for name, value in record.items():
                if name != "step" and isinstance(value, (int, float)):
                    self._summary_writer.add_scalar(name, value, step)
            self._summary_writer.flush()
        return record

    def close(self) -> None:
        if self._summary_writer is not None:
            self._summary_writer.close()


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


class Progress:
    """A progress bar with ETA on a terminal, plain log lines otherwise."""

    def __init__(self, total_steps: int, start_step: int = 0, stream: TextIO | None = None,
                 label: str = "train", enabled: bool = True):
        self.total_steps = total_steps
        self.start_step = start_step
        self.stream = stream or sys.stderr
        self.label = label
        self.enabled = enabled
        self.is_terminal = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start_time = time.time()

    def eta_seconds(self, step: int) -> float:
        done = step - self.start_step
        if done <= 0:
            return float("nan")
        elapsed = time.time() - self.start_time
        return elapsed / done * (self.total_steps - step)

    def update(self, step: int, message: str = "") -> str:
        eta = self.eta_seconds(step)
        eta_text = "--:--" if math.isnan(eta) else format_duration(eta)
        fraction = step / max(1, self.total_steps)
        if self.is_terminal:
            width = 24
            filled = int(width * fraction)
            line = (f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {step}/{self.total_steps} "
                    f"{100 * fraction:5.1f}% ETA {eta_text} {message}")
        else:
            line = (f"{self.label} step {step}/{self.total_steps} ({100 * fraction:.1f}%) ETA {eta_text} "
                    f"{message}\n")
        if self.enabled:
            self.stream.write(line)
            self.stream.flush()
        logging.debug("%s step %d/%d ETA %s %s", self.label, step, self.total_steps, eta_text, message)
        return line

    def close(self) -> None:
        if self.enabled and self.is_terminal:
            self.stream.write("\n")
            self.stream.flush()

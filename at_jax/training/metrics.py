"""Run metrics: ``metrics.jsonl`` and the writers of ``config.metrics.writers`` (TensorBoard, wandb: see
:mod:`at_jax.training.writers`), progress with ETA.

Also the guard that stops a run whose loss turned non-finite.
"""
from __future__ import annotations

import json
import math
import sys
import time
from typing import Mapping, Sequence, TextIO

import numpy as np
from absl import logging

from at_jax.errors import NonFiniteLossError
from at_jax.run_files import METRICS_FILE, as_path, is_remote, read_metrics, write_text
from at_jax.training.writers import Image, open_writers, writer_names


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
    """A run's metrics: one JSON object per line in ``workdir/metrics.jsonl``, and the same scalars, the run's
    config, its summary and images to the other writers of ``writers`` (names of
    :data:`at_jax.training.writers.WRITERS`, comma-separated or a sequence; "jsonl" is always written).

    On resume from ``resume_step``, lines of steps after it (written before an interruption) are dropped,
    so that a resumed run's file equals an uninterrupted run's (TensorBoard purges its events alike). A local
    file is appended to; object stores (gs://, which cannot append) get the whole file rewritten at each write
    (metrics files are small). ``config`` is the run's config (for TensorBoard's text and wandb's config).
    A writer that is not ``enabled`` (a process other than the chief) writes nothing.
    """

    def __init__(self, workdir: str, resume_step: int = 0, writers: str | Sequence[str] = "jsonl",
                 config: Mapping | None = None, wandb_project: str = "at_jax", enabled: bool = True):
        self.path = as_path(workdir) / METRICS_FILE
        self.enabled = enabled
        self._append = not is_remote(workdir)
        self._records: list[dict] = []    # the file's lines, kept to rewrite it (object stores) on each write
        self._writers: list = []          # the writers besides jsonl
        names = writer_names(writers)
        if not enabled:
            return
        if self.path.exists():
            self._records = [line for line in read_metrics(self.path) if line.get("step", 0) <= resume_step]
            self._rewrite()
        self._writers = open_writers(names, workdir, resume_step, config, wandb_project)

    def _rewrite(self) -> None:
        write_text(self.path, "".join(json.dumps(record) + "\n" for record in self._records))

    def write(self, step: int, scalars: Mapping[str, float], **extra) -> dict:
        """Writes ``{"step": step, **scalars, **extra}`` (numpy values as Python numbers) and returns it."""
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
        scalars_only = {name: value for name, value in record.items() if name != "step"}
        for writer in self._writers:
            writer.write_scalars(int(step), scalars_only)
        return record

    def write_summary(self, summary: Mapping, step: int) -> None:
        """The run's final summary (``summary.json``'s record) to each writer that takes it."""
        if self.enabled:
            for writer in self._writers:
                writer.write_summary(summary, int(step))

    @property
    def takes_images(self) -> bool:
        """Whether a writer of this run takes images (TensorBoard, wandb)."""
        return self.enabled and bool(self._writers)

    def write_image(self, name: str, image: Image, step: int) -> None:
        """An image (an array or a PNG's path, e.g. an attention figure) to each writer that takes it."""
        if self.enabled:
            for writer in self._writers:
                writer.write_image(name, image, int(step))

    def close(self) -> None:
        """Closes the writers (wandb: finishes the run); later writes would fail."""
        writers, self._writers = self._writers, []
        for writer in writers:
            writer.close()


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

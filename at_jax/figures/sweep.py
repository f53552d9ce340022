"""A loss-weight sweep (one ``parallel_runs`` job): error against the swept value, median and range over seeds.

Reads the job's ``config.json`` (``parallel_sweep``) and each run's ``config.json`` and ``summary.json``; runs
that stopped (non-finite loss) are drawn as crosses at the top. The error is on the split the job evaluated
(the dataset's ``eval_split``, "validation" when it is "val").
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from at_jax.errors import FigureError
from at_jax.run_files import CONFIG_FILE, SUMMARY_FILE, as_path, read_json, save_png


def sweep_results(job_workdir: str) -> tuple[str, str, dict[float, list[float | None]]]:
    """(swept key, evaluated split, {value: [error % of each seed, None for a stopped run]}), values sorted."""
    job = read_json(as_path(job_workdir) / CONFIG_FILE)
    key = (job or {}).get("parallel_sweep", "")
    if not key:
        raise FigureError(f"{job_workdir} is not a sweep job (its config.json has no parallel_sweep)")
    key = key[len("loss."):] if key.startswith("loss.") else key
    results: dict[float, list[float | None]] = {}
    for run in sorted(as_path(job_workdir).iterdir()):
        config, summary = read_json(run / CONFIG_FILE), read_json(run / SUMMARY_FILE)
        if config is None or summary is None:
            continue
        accuracy = summary.get("accuracy")
        results.setdefault(float(config["loss"][key]), []).append(
            None if accuracy is None else 100.0 * (1.0 - accuracy))
    if not results:
        raise FigureError(f"{job_workdir} holds no finished runs of its sweep")
    split = job.get("dataset", {}).get("eval_split", "test")
    return key, "validation" if split == "val" else split, dict(sorted(results.items()))


def sweep_figure(job_workdir: str, out: str, *, dpi: int = 100, title: str = "") -> tuple[int, int]:
    """Writes the PNG ``out``: one column per swept value (categorical axis, so 0 has its place), each seed's
    error as a dot, the median as a line, min-max as a bar. Returns (height, width) in pixels."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    key, split, results = sweep_results(job_workdir)
    values = list(results)
    figure, axis = plt.subplots(figsize=(max(4.0, 0.9 * len(values) + 1.5), 3.2), dpi=dpi)
    finished = [[error for error in results[value] if error is not None] for value in values]
    top = max((max(errors) for errors in finished if errors), default=100.0)
    for position, (value, errors) in enumerate(zip(values, finished)):
        if errors:
            axis.scatter([position] * len(errors), errors, s=10, color="C0", alpha=0.5, zorder=2)
            axis.vlines(position, min(errors), max(errors), color="C0", linewidth=2, alpha=0.6)
        stopped = len(results[value]) - len(errors)
        if stopped:
            axis.scatter([position] * stopped, [top * 1.05] * stopped, marker="x", color="C3", zorder=3)
    medians = [float(np.median(errors)) if errors else np.nan for errors in finished]
    axis.plot(range(len(values)), medians, color="C0", marker="o", label="median")
    axis.set_xticks(range(len(values)), [_label(value) for value in values])
    axis.set_xlabel(key)
    axis.set_ylabel(f"{split} error (%)")
    seeds = max(len(errors) for errors in results.values())
    axis.set_title(title or f"{split} error vs {key}: median, min-max over {seeds} seeds", fontsize=9)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    height, width = round(figure.get_figheight() * dpi), round(figure.get_figwidth() * dpi)
    save_png(figure, out, dpi)
    plt.close(figure)
    return height, width


def _label(value: float) -> str:
    return f"{value:g}"


def describe(results: dict[float, Sequence[float | None]]) -> list[str]:
    """Markdown table rows (value, median, min-max, stopped) of a sweep's errors."""
    rows = []
    for value, errors in results.items():
        done = [error for error in errors if error is not None]
        span = f"{min(done):.2f}–{max(done):.2f}" if done else "–"
        median = f"{np.median(done):.2f}" if done else "–"
        rows.append(f"| {_label(value)} | {median} | {span} | {len(errors) - len(done)} |")
    return rows

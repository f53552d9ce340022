"""Training curves from ``metrics.jsonl``, several runs on shared axes (as the paper's Figure 7).

One panel per metric against the train step: ``train/total`` and the other logged loss terms
(``train/ce``, ``train/kd``, ``train/at``, ``train/factt``, gradient terms, ...), ``eval/accuracy`` and
``train/learning_rate``; one line per run, labelled by the shortest distinct tail of its workdir path.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

from at_jax.errors import FigureError
from at_jax.run_files import METRICS_FILE, absolute, as_path, read_metrics, save_png

PANEL_INCHES = (4.0, 3.0)   # (width, height) of one panel; the PNG is columns*4 x rows*3 inches at dpi
MAX_COLUMNS = 3
NOT_LOSS_TERMS = ("train/accuracy", "train/learning_rate", "train/grad_norm", "train/param_norm")
PANEL_TITLES = {"train/total": "train loss (total)", "eval/accuracy": "test accuracy",
                "train/learning_rate": "learning rate"}


CurvesError = FigureError  # a workdir without readable metrics


def run_labels(workdirs: Sequence[str]) -> list[str]:
    """The shortest tails of the paths that tell the runs apart, e.g. ["at/seed_0", "none/seed_0"]."""
    parts = [str(absolute(workdir)).rstrip("/").split("/") for workdir in workdirs]
    for length in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-length:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [str(workdir) for workdir in workdirs]


def read_runs(workdirs: Sequence[str]) -> dict[str, list[dict]]:
    """label -> the records of ``workdir/metrics.jsonl``."""
    runs = {}
    for label, workdir in zip(run_labels(workdirs), workdirs):
        path = as_path(workdir) / METRICS_FILE
        if not path.exists():
            raise CurvesError(f"{workdir} has no metrics.jsonl: it is not the workdir of an at_jax run")
        records = read_metrics(path)
        if not records:
            raise CurvesError(f"{path} holds no records")
        runs[label] = records
    return runs


def curve_panels(runs: Mapping[str, Sequence[Mapping]]) -> list[str]:
    """The metrics to plot, in order: train/total, the other loss terms, eval/accuracy, train/learning_rate.

    Loss terms are the ``train/*`` scalars except accuracy, learning rate and norms, leaving out the per-pair
    ``train/at/k`` and ``train/task`` unless some run distils (``train/kd``), where it differs from ``train/ce``.
    """
    names: list[str] = []
    for records in runs.values():
        for record in records:
            names += [name for name in record if name not in names]
    distils = "train/kd" in names
    terms = [name for name in names if name.startswith("train/") and name not in NOT_LOSS_TERMS
             and name.count("/") == 1 and (name != "train/task" or distils)]
    terms.sort(key=lambda name: name != "train/total")
    return terms + [name for name in ("eval/accuracy", "train/learning_rate") if name in names]


def figure_pixels(num_panels: int, dpi: int) -> tuple[int, int]:
    """(height, width) in pixels of a curves figure with ``num_panels`` panels."""
    columns = min(MAX_COLUMNS, num_panels)
    rows = math.ceil(num_panels / columns)
    return round(rows * PANEL_INCHES[1] * dpi), round(columns * PANEL_INCHES[0] * dpi)


def curves_figure(workdirs: Sequence[str], out: str, *, metrics: Sequence[str] = (), dpi: int = 100,
                  title: str = "") -> tuple[int, int]:
    """Writes the PNG ``out`` with one panel per metric (``metrics`` or :func:`curve_panels`).

    Returns the figure's (height, width) in pixels.
    """
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    from matplotlib.lines import Line2D  # pylint: disable=import-outside-toplevel

    runs = read_runs(workdirs)
    panels = list(metrics) or curve_panels(runs)
    logged = {name for records in runs.values() for record in records for name in record}
    missing = [name for name in panels if name not in logged]
    if missing:
        raise CurvesError(f"no run logged {', '.join(missing)}; logged: {', '.join(sorted(logged - {'step'}))}")
    height, width = figure_pixels(len(panels), dpi)
    columns = min(MAX_COLUMNS, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, squeeze=False, figsize=(width / dpi, height / dpi), dpi=dpi)
    for axis, name in zip(axes.flat, panels):
        for index, (label, records) in enumerate(runs.items()):   # one colour per run in every panel
            points = sorted((record["step"], record[name]) for record in records if name in record)
            if points:
                steps, values = zip(*points)
                axis.plot(steps, values, label=label, color=f"C{index % 10}",
                          marker="o" if len(points) < 3 else None, markersize=3)
        axis.set_title(PANEL_TITLES.get(name, name), fontsize=9)
        axis.set_xlabel("step", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(panels):]:
        axis.axis("off")
    handles = [Line2D([], [], color=f"C{index % 10}") for index in range(len(runs))]
    axes.flat[0].legend(handles, list(runs), fontsize=7)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    save_png(figure, out, dpi)
    plt.close(figure)
    return height, width

"""Figures of a finished run, for the figure commands and for the metric writers that take images.

:func:`load_trained_run` reads a finished run as :class:`at_jax.figures.attention_maps.TrainedRun`;
:func:`log_attention_figure` draws a run's attention maps beside its teacher's (``figures/attention_maps.png``
in the run's directory) and hands the PNG to the run's writers (TensorBoard images, wandb), at the end of a
run with ``metrics.attention_figure`` on and a writer that takes images.
"""
from __future__ import annotations

from absl import logging

from at_jax.errors import UserError
from at_jax.figures.attention_maps import TrainedRun, attention_figure, default_teacher_workdir
from at_jax.run_files import as_path
from at_jax.training.checkpoint import load_run, model_from_config, variables_of

FIGURE_NAME = "attention_maps"


def load_trained_run(workdir: str) -> TrainedRun:
    """A finished run (config, model, variables, step) read from ``workdir``."""
    run = load_run(workdir)
    return TrainedRun(workdir, run.config, model_from_config(run.config), variables_of(run), run.step)


def log_attention_figure(run_dir: str, writer, step: int) -> str | None:
    """Draws ``run_dir/figures/attention_maps.png`` (the run's test images, its attention maps and its teacher's)
    and writes it to ``writer`` (a :class:`~at_jax.training.metrics.MetricWriter`); returns the path, or None
    when the figure cannot be drawn (logged: a finished run never fails for its figure)."""
    path = as_path(run_dir) / "figures" / f"{FIGURE_NAME}.png"
    try:
        student = load_trained_run(run_dir)
        teacher_dir = default_teacher_workdir(student)
        path.parent.mkdir(parents=True, exist_ok=True)
        attention_figure(student, load_trained_run(teacher_dir) if teacher_dir else None, str(path))
    except (UserError, ValueError) as error:
        logging.warning("no attention figure for %s: %s", run_dir, error)
        return None
    writer.write_image(f"figures/{FIGURE_NAME}", str(path), step)
    return str(path)

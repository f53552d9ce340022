"""Attention-map figures like the paper's Figures 4 and 6: test images beside each group's attention map.

For a trained run and an activation ``A`` (N, h, w, C) of each feature group the model returns, the map is
``attention_map(A, p, reduce)`` (at_jax.attention: ``reduce_c |A_c|**p``, l2-normalised over positions),
reshaped to (h, w) and bilinearly upsampled to the image size. Models that sow Learn-To-Pay-Attention maps
(``self.sow('intermediates', 'attention', a)``, a of shape (N, h, w)) get those maps as extra columns.
One row per image; columns: the image, then the student's maps, then the teacher's.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from at_jax.attention import attention_map, tokens_to_grid
from at_jax.data import dataset_from_config, normalize
from at_jax.data.registry import load_source
from at_jax.data.views import run_views
from at_jax.errors import CheckpointError, FigureError
from at_jax.run_files import as_path, save_png
from at_jax.spatial import resize_antialiased, resize_bilinear

CELL_INCHES = 1.6   # each panel is CELL_INCHES square; the PNG is (rows, columns) * CELL_INCHES * dpi pixels


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """A finished run: its saved config, model and variables (``at_jax.training.run_figures.load_trained_run``)."""
    workdir: str
    config: dict
    model: Any
    variables: dict
    step: int

    @property
    def name(self) -> str:
        return str(self.config.get("model"))


def load_test_images(config: dict, num_images: int, start: int = 0):
    """``(uint8 images (n, H, W, C), labels, mean, std)`` of test examples start.. of the run's dataset (a user's
    dataset registered again from its file, ``dataset_source``), at the size the run's input path delivers (the
    larger of the student's and the teacher's views, :mod:`at_jax.data.views`)."""
    load_source(config["dataset"]["name"], config.get("dataset_source", ""))
    dataset = dataset_from_config(config["dataset"], run_views(config))
    stop = min(start + num_images, len(dataset.test_labels))
    if start < 0 or stop <= start:
        raise FigureError(f"no test images from index {start}: the test set has {len(dataset.test_labels)}")
    return (np.asarray(dataset.test_images[start:stop]), np.asarray(dataset.test_labels[start:stop]),
            dataset.mean, dataset.std)


def upsample(maps: jax.Array, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (N, h, w) maps to (N, *size)."""
    return np.asarray(resize_bilinear(jnp.asarray(maps, jnp.float32), size, axes=(-2, -1)))


def attention_columns(model: Any, variables: dict, inputs: jax.Array, *, p: float = 2.0,
                      reduce: str = "mean") -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """``(logits, [(title, maps (N, h, w)), ...])``: the AT map of every feature group, then the sown LTPA maps.

    ``model.apply(variables, inputs, train=False, mutable=["intermediates"])`` must return
    ``((logits, features), state)``; maps sown as ``('intermediates', 'attention')`` are taken as they are.
    """
    (logits, features), state = model.apply(variables, inputs, train=False, mutable=["intermediates"])
    columns = []
    for index, feature in enumerate(features):
        grid = tokens_to_grid(feature)   # ViT tokens laid on their patch grid; NHWC as it is
        flat = attention_map(grid, p=p, reduce=reduce)
        columns.append((f"group {index + 1}", np.asarray(flat.reshape(grid.shape[:3]))))
    sown = state.get("intermediates", {}).get("attention", ())
    for index, maps in enumerate(sown):
        columns.append((f"LTPA {index + 1}", np.asarray(maps, np.float32)))
    return np.asarray(logits), columns


def figure_pixels(num_rows: int, num_columns: int, dpi: int) -> tuple[int, int]:
    """(height, width) of the saved PNG in pixels."""
    return round(num_rows * CELL_INCHES * dpi), round(num_columns * CELL_INCHES * dpi)


def _display_image(image: np.ndarray) -> np.ndarray:
    return image[..., 0] if image.shape[-1] == 1 else image


def attention_figure(student: TrainedRun, teacher: TrainedRun | None, out: str, *, num_images: int = 4,
                     start: int = 0, dpi: int = 100) -> tuple[int, int]:
    """Writes the PNG ``out``: one row per test image; image | student maps | teacher maps.

    Returns the figure's (height, width) in pixels.
    """
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    if num_images < 1:
        raise FigureError(f"num_images must be >= 1, got {num_images}")
    if teacher is not None:
        teacher_dataset = teacher.config.get("dataset", {}).get("name")
        if teacher_dataset != student.config["dataset"]["name"]:
            raise CheckpointError(f"teacher was trained on {teacher_dataset!r}, the student on "
                                  f"{student.config['dataset']['name']!r}")
    images, labels, mean, std = load_test_images(student.config, num_images, start)
    inputs = normalize(jnp.asarray(images), mean, std)
    loss = student.config.get("loss", {})
    options = dict(p=float(loss.get("at_p", 2.0)), reduce=loss.get("at_reduce", "mean"))
    runs = [("student", student)] + ([("teacher", teacher)] if teacher is not None else [])
    view_sizes = dict(zip(("student", "teacher"), run_views(student.config).sizes(images.shape[1])))
    columns, predictions = [], []
    for role, run in runs:
        view = resize_antialiased(inputs, view_sizes[role])   # each network at its own input size
        logits, run_columns = attention_columns(run.model, run.variables, view, **options)
        predictions.append((role, logits.argmax(-1)))
        columns += [(f"{role} {run.name}\n{title}", maps) for title, maps in run_columns]
    size = images.shape[1:3]
    height, width = figure_pixels(len(images), 1 + len(columns), dpi)
    figure, axes = plt.subplots(len(images), 1 + len(columns), squeeze=False,
                                figsize=(width / dpi, height / dpi), dpi=dpi)
    for row, image in enumerate(images):
        caption = f"label {labels[row]}\n" + " ".join(f"{role[0]}:{pred[row]}" for role, pred in predictions)
        axes[row, 0].imshow(_display_image(image), cmap="gray" if image.shape[-1] == 1 else None)
        axes[row, 0].set_title(caption, fontsize=7)
        for column, (title, maps) in enumerate(columns, start=1):
            axes[row, column].imshow(upsample(maps[row:row + 1], size)[0], cmap="jet", interpolation="nearest")
            if row == 0:
                axes[row, column].set_title(title, fontsize=7)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.45 / (len(images) * CELL_INCHES),
                           wspace=0.05, hspace=0.35)
    save_png(figure, out, dpi)
    plt.close(figure)
    return height, width


def default_teacher_workdir(student: TrainedRun) -> str | None:
    """The teacher the student's run was trained with (``teacher.workdir`` in its config.json), if it exists."""
    workdir = (student.config.get("teacher") or {}).get("workdir") or ""
    return workdir if workdir and as_path(workdir).is_dir() else None


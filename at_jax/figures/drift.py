"""Attention maps over training: how a student's maps drift towards its teacher's (``metrics.attention_every``).

A run trained with ``metrics.attention_every = k`` holds ``attention/step_<step>.npz`` snapshots (each AT pair's
student and teacher maps of fixed probe images, :mod:`at_jax.training.attention_probe`) and
``attention/probe_images.npz``. :func:`drift_figure` draws one probe image's maps as one PNG: one row per step
(at most ``max_rows``, evenly spread, the first and the last always among them), columns: the image, then for
each pair the student's map beside the teacher's. :func:`maps_panel` is the small image the trainer hands to
TensorBoard / wandb at each snapshot.

Maps are shown on the image's grid (bilinear in the figure, nearest in the panel), each scaled to its own
maximum.
"""
from __future__ import annotations

import io
import re
from typing import Sequence

import numpy as np

from at_jax.errors import FigureError
from at_jax.figures.attention_maps import CELL_INCHES, figure_pixels, upsample
from at_jax.run_files import ATTENTION_DIR, ATTENTION_IMAGES_FILE, as_path, save_png

SNAPSHOT_NAME = re.compile(r"^step_(\d+)\.npz$")
PANEL_ROWS = 4           # probe images in a writer's panel
PANEL_CELL = (32, 96)    # a panel cell's side in pixels: the image's side clipped to this range
PANEL_GAP = 2            # pixels between rows and between a pair's student and teacher; 3x between pairs


def read_npz(path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file (local or a URL)."""
    with np.load(io.BytesIO(as_path(path).read_bytes())) as data:
        return {name: data[name] for name in data.files}


def snapshot_steps(workdir: str) -> list[tuple[int, object]]:
    """``(step, path)`` of the run's attention snapshots, by step; :class:`FigureError` when it has none."""
    directory = as_path(workdir) / ATTENTION_DIR
    found = []
    if directory.is_dir():
        found = sorted((int(match.group(1)), path) for path in directory.iterdir()
                       if (match := SNAPSHOT_NAME.match(path.name)))
    if not found:
        runs = [entry.name for entry in as_path(workdir).iterdir() if (entry / ATTENTION_DIR).is_dir()] \
            if as_path(workdir).is_dir() else []
        hint = f" (a job of several runs: pass one run's directory, e.g. {workdir}/{runs[0]})" if runs else ""
        raise FigureError(f"{workdir} has no attention snapshots{hint}; run with "
                          "--config.metrics.attention_every=K")
    return found


def spread_rows(count: int, max_rows: int) -> list[int]:
    """At most ``max_rows`` indices of ``range(count)``, evenly spread, the first and the last included."""
    if max_rows < 1:
        raise FigureError(f"--max-rows must be >= 1, got {max_rows}")
    if count <= max_rows:
        return list(range(count))
    if max_rows == 1:
        return [count - 1]
    return sorted(set(np.round(np.linspace(0, count - 1, max_rows)).astype(int).tolist()))


def _display(image: np.ndarray) -> np.ndarray:
    return image[..., 0] if image.shape[-1] == 1 else image


def drift_figure(workdir: str, out: str, *, image: int = 0, max_rows: int = 8, dpi: int = 100) -> tuple[int, int]:
    """Writes the PNG ``out``: rows = snapshot steps, columns = probe image ``image``, then student | teacher of
    each pair. Returns the figure's (height, width) in pixels."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    steps = snapshot_steps(workdir)
    steps = [steps[index] for index in spread_rows(len(steps), max_rows)]
    images = read_npz(as_path(workdir) / ATTENTION_DIR / ATTENTION_IMAGES_FILE)["images"]
    if not 0 <= image < len(images):
        raise FigureError(f"--image must be in [0, {len(images)}): the run has {len(images)} probe images")
    snapshots = [read_npz(path) for _, path in steps]
    labels = [str(label) for label in snapshots[-1]["labels"]]
    height, width = figure_pixels(len(steps), 1 + 2 * len(labels), dpi)
    figure, axes = plt.subplots(len(steps), 1 + 2 * len(labels), squeeze=False,
                                figsize=(width / dpi, height / dpi), dpi=dpi)
    size = images.shape[1:3]
    for row, ((step, _), snapshot) in enumerate(zip(steps, snapshots)):
        axes[row, 0].imshow(_display(images[image]), cmap="gray" if images.shape[-1] == 1 else None)
        axes[row, 0].set_ylabel(f"step {step}", fontsize=8)
        for pair, label in enumerate(labels):
            loss = float(snapshot["loss"][pair])
            for side, role in enumerate(("student", "teacher")):
                axis = axes[row, 1 + 2 * pair + side]
                axis.imshow(upsample(snapshot[f"{role}_{pair}"][image:image + 1], size)[0], cmap="jet")
                if role == "student":
                    axis.set_xlabel(f"AT {loss:.3g}", fontsize=6)
                if row == 0:
                    axis.set_title(f"pair {pair} {role}\n{label}", fontsize=6)
    axes[0, 0].set_title(f"probe image {image}", fontsize=7)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.subplots_adjust(left=0.05, right=0.99, bottom=0.15 / len(steps), top=1 - 0.5 / (len(steps) * CELL_INCHES),
                           wspace=0.05, hspace=0.35)
    save_png(figure, out, dpi)
    plt.close(figure)
    return height, width


def _nearest(array: np.ndarray, side: int) -> np.ndarray:
    """(N, h, w, ...) resampled to (N, side, side, ...) by nearest neighbour."""
    rows = np.arange(side) * array.shape[1] // side
    cols = np.arange(side) * array.shape[2] // side
    return array[:, rows][:, :, cols]


def maps_panel(images: np.ndarray, student: Sequence[np.ndarray], teacher: Sequence[np.ndarray],
               rows: int = PANEL_ROWS) -> np.ndarray:
    """A small uint8 (H, W, 3) image: one row per probe image (at most ``rows``), columns: the image, then
    student | teacher of each pair, maps coloured with "jet", each scaled to its own maximum."""
    from matplotlib import colormaps  # pylint: disable=import-outside-toplevel

    count, side = min(rows, len(images)), int(np.clip(images.shape[1], *PANEL_CELL))
    pictures = _nearest(np.asarray(images[:count]), side)
    columns = [np.repeat(pictures, 3, axis=-1) if pictures.shape[-1] == 1 else pictures[..., :3]]
    for student_maps, teacher_maps in zip(student, teacher):
        for maps in (student_maps, teacher_maps):
            maps = np.asarray(maps[:count], np.float32)
            scaled = maps / np.maximum(maps.max(axis=(1, 2), keepdims=True), 1e-12)
            columns.append((colormaps["jet"](_nearest(scaled, side))[..., :3] * 255).astype(np.uint8))
    gaps = [0] + [PANEL_GAP if column % 2 == 0 else 3 * PANEL_GAP for column in range(1, len(columns))]
    lefts = np.cumsum(gaps) + side * np.arange(len(columns))   # wider gaps between pairs than within one
    cell = side + PANEL_GAP
    panel = np.full((count * cell - PANEL_GAP, int(lefts[-1]) + side, 3), 255, np.uint8)
    for left, cells in zip(lefts, columns):
        for row in range(count):
            panel[row * cell:row * cell + side, left:left + side] = cells[row]
    return panel

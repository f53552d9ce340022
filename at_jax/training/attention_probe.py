"""Attention maps while training: the student's maps converging to the teacher's (``metrics.attention_every``).

With ``metrics.attention_every = k > 0``, a teacher and a feature pairing (AT, F-ActT), every
``log_every_steps * k`` steps, at step 0 of a fresh run and at the last step, each run of the job writes for a
fixed set of probe images (the first :data:`PROBE_IMAGES` test images, normalised as in evaluation, each network
at its own input size as in the train step):

- ``RUN/attention/step_<step:08d>.npz`` (:func:`at_jax.run_files.attention_snapshot_path`): ``student_<i>``,
  ``teacher_<i>`` the maps of pair ``i`` (0-based, as ``train/at/<i>``) as float32 (n_probe, h, w), each on its
  own feature grid: ``attention_map(feature, p, reduce, normalize)`` with the run's loss options, token
  features laid on their patch grid; ``loss`` (pairs,) float32: ``at_loss(student_i, teacher_i)`` on the probe
  images with the run's options (the ``train/at/<i>`` term on these images); ``pairs`` (pairs, 2) int32 feature
  indices; ``labels`` (pairs,) str; ``step``. The probe images (uint8 (n, H, W, C), as delivered) are in
  ``RUN/attention/probe_images.npz`` (``images``). Files are written atomically; a resumed run rewrites a
  step's file with the same content, and a step's scalars are logged once.
- the scalars ``attention/pair_<i>`` (= ``loss[i]``) to the run's metric writers (``metrics.jsonl``, ...);
- an image ``attention/maps`` (probe images | student | teacher of each pair) to the writers that take images.

The maps use the student's current weights in eval mode (batch norm statistics, no dropout; not the EMA)
and the frozen teacher. One compiled program per job computes all runs' maps.
"""
from __future__ import annotations

import io
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from at_jax.attention import at_loss, attention_map, tokens_to_grid
from at_jax.data.augment import normalize
from at_jax.errors import ConfigError
from at_jax.figures.drift import maps_panel
from at_jax.losses import Objective
from at_jax.run_files import (ATTENTION_DIR, ATTENTION_IMAGES_FILE, METRICS_FILE, as_path, attention_snapshot_path,
                              read_metrics, write_bytes)
from at_jax.training import multi_run, sharding
from at_jax.training.state import compute_dtype
from at_jax.training.step import input_view, model_variables

PROBE_IMAGES = 8            # the first test images
SCALAR_PREFIX = "attention/pair_"
IMAGE_TAG = "attention/maps"


def snapshot_interval(config) -> int:
    """Steps between snapshots: ``log_every_steps * metrics.attention_every`` (0: off)."""
    every = int(config.get("metrics", {}).get("attention_every", 0) or 0)
    if every < 0:
        raise ConfigError(f"metrics.attention_every must be >= 0 (0 = off), got {every}")
    return int(config.log_every_steps) * every


def probe_images(inputs: Any, count: int = PROBE_IMAGES) -> np.ndarray:
    """The first ``count`` test images (uint8 (n, H, W, C)) as the job's inputs deliver them: the in-memory test
    set, or the first streamed eval batch (its padding left out)."""
    if inputs.kind == "device":
        return np.asarray(inputs.dataset.test_images[:count])
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    batches = inputs.eval_batches()
    try:
        batch = next(batches)
    finally:
        batches.close()
    images, mask = (np.asarray(multihost_utils.process_allgather(batch[name], tiled=True))
                    for name in ("images", "mask"))
    return images[mask > 0][:count]


def feature_map(feature: jax.Array, options: dict) -> jax.Array:
    """The attention map (N, h, w) of a feature on its own grid: :func:`attention_map` with the run's ``p``,
    ``reduce``, ``normalize`` (token features laid on their patch grid first)."""
    grid = tokens_to_grid(feature)
    flat = attention_map(grid, p=options["p"], reduce=options["reduce"], normalize=options["normalize"])
    return flat.reshape(grid.shape[:3])


def loss_options(objective: Objective) -> dict:
    """The AT options of the run's loss (``loss.at_p``, ``at_reduce``, ``at_normalize``, ``at_resize``,
    ``at_form``) as :func:`at_jax.at_loss` keywords."""
    return {key: objective.option(f"at_{key}") for key in ("p", "reduce", "normalize", "resize", "form")}


def make_probe(model: Any, teacher_model: Any, pairs: Sequence[tuple[int, int]], options: dict, runs: int,
               mode: str) -> Callable:
    """``probe(params, batch_stats, teacher_variables, student_x, teacher_x) -> {"student": (maps (S, N, h, w),
    ...), "teacher": (maps (N, h, w), ...), "loss": (S, pairs)}`` over the job's stacked runs (jitted)."""

    def probe(params, batch_stats, teacher_variables, student_x, teacher_x):
        teacher_features = teacher_model.apply(teacher_variables, teacher_x, train=False)[1]
        selected = tuple(teacher_features[j] for _, j in pairs)

        def run_probe(run_params, run_stats, shared):
            features = model.apply(model_variables(run_params, run_stats), shared["x"], train=False)[1]
            student = [features[i] for i, _ in pairs]
            return {"student": tuple(feature_map(feature, options) for feature in student),
                    "loss": jnp.stack([at_loss(s, t, **options) for s, t in zip(student, shared["teacher"])])}

        per_run = multi_run.job_eval_step(run_probe, runs, mode)(params, batch_stats,
                                                                 {"x": student_x, "teacher": selected})
        return dict(per_run, teacher=tuple(feature_map(feature, options) for feature in selected))

    return jax.jit(probe)


def pair_labels(objective: Objective, pairs: Sequence[tuple[int, int]]) -> list[str]:
    """A short name per pair: the tapped layers' paths (``loss.at_layers``) or the feature indices."""
    layers = objective.option("at_layers")
    if layers:
        return [f"{student} | {teacher}" for student, teacher in layers]
    return [f"features {i} | {j}" for i, j in pairs]


def snapshot_bytes(step: int, student: Sequence[np.ndarray], teacher: Sequence[np.ndarray], loss: np.ndarray,
                   pairs: Sequence[tuple[int, int]], labels: Sequence[str]) -> bytes:
    """One run's snapshot as the bytes of an ``.npz`` file (see the module docstring)."""
    arrays = {f"student_{k}": np.asarray(maps, np.float32) for k, maps in enumerate(student)}
    arrays.update({f"teacher_{k}": np.asarray(maps, np.float32) for k, maps in enumerate(teacher)})
    buffer = io.BytesIO()
    np.savez(buffer, step=np.int64(step), loss=np.asarray(loss, np.float32),
             pairs=np.asarray(pairs, np.int32).reshape(-1, 2), labels=np.asarray(list(labels), str), **arrays)
    return buffer.getvalue()


def logged_at(run_dir: str, step: int) -> bool:
    """Whether ``run_dir/metrics.jsonl`` already has this step's attention scalars (a fresh run restarted at
    step 0 keeps its step-0 lines)."""
    path = as_path(run_dir) / METRICS_FILE
    return path.exists() and any(record.get("step") == step and f"{SCALAR_PREFIX}0" in record
                                 for record in read_metrics(path))


class AttentionProbe:
    """The probe images, their two views and the compiled probe of one job (see the module docstring)."""

    def __init__(self, setup: Any, job: Any, every: int, pairs: Sequence[tuple[int, int]]):
        self.every, self.pairs, self.total = every, tuple(pairs), setup.total_steps
        self.labels = pair_labels(setup.objective, self.pairs)
        self.images = probe_images(setup.inputs)
        x = normalize(jnp.asarray(self.images), setup.inputs.mean, setup.inputs.std)
        config = setup.config
        views = (input_view(x, setup.student_shape[0]).astype(compute_dtype(config.compute_dtype)),
                 input_view(x, setup.teacher_shape[0]).astype(
                     compute_dtype(config.teacher.get("compute_dtype") or config.compute_dtype)))
        self.views = sharding.replicate(jax.device_get(views), setup.mesh)
        self.teacher_variables = setup.teacher_variables
        self.probe = make_probe(setup.model, setup.teacher.model, self.pairs, loss_options(setup.objective),
                                job.size, config.get("parallel_mode", "auto"))

    @classmethod
    def create(cls, setup: Any, job: Any) -> "AttentionProbe | None":
        """The job's probe, or None when ``metrics.attention_every`` is 0 or nothing is paired with a teacher."""
        every = snapshot_interval(setup.config)
        if not every or setup.teacher is None or not setup.objective.pairs_features:
            return None
        return cls(setup, job, every, feature_pairs_of(setup))

    def due(self, step: int) -> bool:
        """Whether ``step`` gets a snapshot: a multiple of the interval (step 0 included) or the last step."""
        return step % self.every == 0 or step == self.total

    def record(self, step: int, state: dict, active: Sequence[int], run_dirs: Sequence[str], writers: Sequence,
               write: bool) -> None:
        """Computes the maps of every run at ``step`` and, when ``write`` (the chief), writes those of the
        ``active`` runs: snapshot file, scalars, image."""
        out = jax.device_get(self.probe(state["params"]["model"], state["batch_stats"], self.teacher_variables,
                                        *self.views))
        if not write:
            return
        for index in active:
            self.write_run(step, run_dirs[index], writers[index],
                           [maps[index] for maps in out["student"]], list(out["teacher"]), out["loss"][index])

    def write_run(self, step: int, run_dir: str, writer: Any, student: list, teacher: list,
                  loss: np.ndarray) -> None:
        """One run's snapshot file, ``attention/pair_<i>`` scalars and maps image at ``step``."""
        images_path = as_path(run_dir) / ATTENTION_DIR / ATTENTION_IMAGES_FILE
        if not images_path.exists():
            buffer = io.BytesIO()
            np.savez(buffer, images=self.images)
            write_bytes(images_path, buffer.getvalue())
        write_bytes(attention_snapshot_path(run_dir, step),
                    snapshot_bytes(step, student, teacher, loss, self.pairs, self.labels))
        if step == 0 and logged_at(run_dir, step):
            return
        writer.write(step, {f"{SCALAR_PREFIX}{k}": float(value) for k, value in enumerate(loss)})
        if writer.takes_images:
            writer.write_image(IMAGE_TAG, maps_panel(self.images, student, teacher), step)
        logging.debug("attention snapshot of %s at step %d", run_dir, step)


def feature_pairs_of(setup: Any) -> tuple[tuple[int, int], ...]:
    """The (student, teacher) feature indices the job's objective pairs, from the models' output shapes."""
    student = jax.eval_shape(lambda: setup.model.init_with_output(
        jax.random.PRNGKey(0), jnp.zeros((1,) + tuple(setup.student_shape)), train=False))[0][1]
    teacher = jax.eval_shape(lambda: setup.teacher.model.apply(
        setup.teacher_variables, jnp.zeros((1,) + tuple(setup.teacher_shape)), train=False))[1]
    return setup.objective.pairs(len(student), len(teacher))

"""Setting a job up: config checks, data, models, teacher, objective, optimizer and the compiled steps.

:func:`set_up` turns a config and a :class:`~at_jax.training.multi_run.Job` into a :class:`Setup`: everything
the loop needs, nothing written to disk. Every value a user can get wrong is checked here, before the
first file of the run is written.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from at_jax import models
from at_jax.data import Dataset, dataset_from_config
from at_jax.errors import ConfigError
from at_jax.losses import Objective, build_objective
from at_jax.training import multi_run, sharding
from at_jax.training.batches import device_data
from at_jax.training.compilation_cache import use_compilation_cache
from at_jax.training.cpu_defaults import default_steps_per_call
from at_jax.training.finetune import freeze_transform, load_pretrained
from at_jax.training.optimizer import make_optimizer
from at_jax.training.state import compute_dtype, create_train_state
from at_jax.training.step import StepConfig, make_eval_step, make_multi_step, make_train_step
from at_jax.training.teacher import Teacher, load_teacher


@dataclasses.dataclass
class Setup:
    """Everything the training loop of a job needs."""
    config: ml_collections.ConfigDict
    dataset: Dataset
    mesh: Any
    objective: Objective
    model: Any
    teacher: Teacher | None
    pretrained: dict | None       # init.workdir's variables (host arrays), training/finetune.py
    total_steps: int
    steps_per_epoch: int
    steps_per_call: int
    eval_chunk: int
    data: dict                    # device-resident train and test arrays
    init_state: Callable          # seeds[S] -> stacked initial state (jitted, replicated)
    train_steps: Callable         # (state, metric_sums, teacher_variables, data, indices[K, S, B])
    eval_step: Callable           # (params, batch_stats, data, start, chunk) -> stacked sums
    single_step: Callable         # the job's step (not jitted), for metric shapes

    @property
    def teacher_variables(self) -> Any:
        return None if self.teacher is None else self.teacher.variables


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises :class:`ConfigError` for values that cannot work, before anything is written."""
    for key in ("log_every_steps", "checkpoint_every_steps"):
        if config[key] <= 0:
            raise ConfigError(f"{key} must be positive, got {config[key]}")
    if config.num_train_steps <= 0 and config.num_epochs <= 0:
        raise ConfigError("set num_epochs > 0 or num_train_steps > 0")
    learning_rate = config.optimizer.learning_rate
    if not isinstance(learning_rate, (int, float)) or not math.isfinite(learning_rate):
        raise ConfigError(f"optimizer.learning_rate must be a finite number, got {learning_rate}")
    if config.batch_size <= 0:
        raise ConfigError(f"batch_size must be positive, got {config.batch_size}")


def total_steps(config: ml_collections.ConfigDict, num_train: int) -> int:
    """Train steps of a run: ``num_train_steps`` when > 0, else ``num_epochs`` whole epochs."""
    if config.num_train_steps > 0:
        return int(config.num_train_steps)
    return int(config.num_epochs) * (num_train // config.batch_size)


def augmentation(config: ml_collections.ConfigDict, dataset: Dataset) -> tuple[int, bool]:
    """(crop padding, flip) from ``config.augment``, defaulting to the dataset's recommendation."""
    augment = config.get("augment", {})
    pad = augment.get("pad", -1)
    pad = dataset.pad if pad is None or pad < 0 else int(pad)
    flip_setting = augment.get("flip", "dataset")
    if flip_setting not in ("dataset", "on", "off"):
        raise ConfigError(f"augment.flip must be 'dataset', 'on' or 'off', got {flip_setting!r}")
    flip = dataset.flip if flip_setting == "dataset" else flip_setting == "on"
    if pad >= dataset.train_images.shape[1]:
        raise ConfigError(f"augment.pad {pad} must be smaller than the image size {dataset.train_images.shape[1]}")
    return pad, flip


def load_data(config: ml_collections.ConfigDict, mesh) -> tuple[Dataset, int]:
    """The dataset and the train steps of the run (checked against the batch size and the mesh)."""
    try:
        sharding.check_batch_size(config.batch_size, mesh)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    dataset = dataset_from_config(config.dataset)
    num_train = len(dataset.train_labels)
    if config.batch_size > num_train:
        raise ConfigError(f"batch_size {config.batch_size} exceeds the {num_train} training examples")
    return dataset, total_steps(config, num_train)


def check_feature_pairs(objective: Objective, model: Any, teacher: Teacher | None, sample: jax.Array) -> None:
    """Raises :class:`ConfigError` when ``loss.at_pairs`` names a feature the student or teacher lacks."""
    if teacher is None:
        return
    student_features = jax.eval_shape(
        lambda: model.init_with_output(jax.random.PRNGKey(0), sample, train=False)[0][1])
    teacher_features = jax.eval_shape(lambda: teacher.model.apply(teacher.variables, sample, train=False)[1])
    objective.pairs(len(student_features), len(teacher_features))


def set_up(config: ml_collections.ConfigDict, job: multi_run.Job) -> Setup:
    """Builds the job's :class:`Setup` (see the module docstring)."""
    check_config(config)
    use_compilation_cache(config.get("compilation_cache_dir", "auto"))
    mesh = sharding.make_mesh()
    dataset, steps = load_data(config, mesh)
    dtype = compute_dtype(config.compute_dtype)
    teacher_dtype = compute_dtype(config.teacher.get("compute_dtype") or config.compute_dtype)
    objective = build_objective(multi_run.structure_loss_config(config.loss, job.specs))
    model = models.create(config.model, dataset.num_classes, dtype=dtype, **config.get("model_kwargs", {}))
    teacher = (load_teacher(config, dataset.num_classes, mesh, teacher_dtype) if objective.uses_teacher
               else None)
    sample = jnp.zeros((1,) + dataset.image_shape, dtype)
    check_feature_pairs(objective, model, teacher, sample)
    try:
        transform, schedule = make_optimizer(config.optimizer, steps, config.batch_size)
        transform = freeze_transform(transform, config.get("freeze", {}))
    except ValueError as error:
        raise ConfigError(str(error)) from None
    pad, flip = augmentation(config, dataset)
    step_config = StepConfig(total_steps=steps, pad=pad, flip=flip, mean=dataset.mean, std=dataset.std,
                             compute_dtype=dtype, teacher_dtype=teacher_dtype,
                             student_train_mode=not config.get("freeze", {}).get("batch_norm", False))
    mode = config.get("parallel_mode", "auto")
    single_step = multi_run.job_train_step(
        make_train_step(model, teacher and teacher.model, objective, transform, schedule, step_config),
        job.size, mode)
    eval_step = multi_run.job_eval_step(
        make_eval_step(model, step_config, dataset.num_classes, sharding.batch_sharded(mesh)), job.size, mode)
    init = lambda seed: create_train_state(model, transform, sample, seed, objective=objective,
                                           teacher_model=teacher and teacher.model,
                                           teacher_variables=teacher and teacher.variables)
    eval_chunk = max(mesh.size, (config.get("eval_batch_size", 0) or config.batch_size) // mesh.size * mesh.size)
    init_workdir = config.get("init", {}).get("workdir", "")
    return Setup(config=config, dataset=dataset, mesh=mesh, objective=objective, model=model, teacher=teacher,
                 pretrained=load_pretrained(init_workdir, config.model) if init_workdir else None,
                 total_steps=steps, steps_per_epoch=len(dataset.train_labels) // config.batch_size,
                 steps_per_call=int(config.get("steps_per_call", 0)) or default_steps_per_call(),
                 eval_chunk=eval_chunk, data=device_data(dataset, eval_chunk, mesh),
                 init_state=jax.jit(jax.vmap(init), out_shardings=sharding.replicated(mesh)),
                 train_steps=jax.jit(make_multi_step(single_step), donate_argnums=(0, 1)),
                 eval_step=jax.jit(eval_step, static_argnums=4), single_step=single_step)

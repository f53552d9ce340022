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
from at_jax.data import Dataset
from at_jax.data.from_config import input_data
from at_jax.data.streaming import default_workers
from at_jax.data.views import ImageViews, configured_sizes
from at_jax.errors import ConfigError
from at_jax.losses import Objective, build_objective
from at_jax.models.tap import tap_layers
from at_jax.training import multi_run, sharding
from at_jax.training.compilation_cache import use_compilation_cache
from at_jax.training.cpu_defaults import default_steps_per_call
from at_jax.training.finetune import check_freeze, freeze_transform, load_pretrained
from at_jax.training.inputs import make_inputs
from at_jax.training.optimizer import make_optimizer
from at_jax.training.state import compute_dtype, create_train_state
from at_jax.training.step import StepConfig, make_eval_step, make_multi_step, make_train_step
from at_jax.training.teacher import Teacher, load_teacher
from at_jax.training.writers import writer_names


@dataclasses.dataclass
class Setup:
    """Everything the training loop of a job needs."""
    config: ml_collections.ConfigDict
    inputs: Any                   # training/inputs.py: DeviceInputs (small sets) or StreamInputs (grain)
    mesh: Any
    objective: Objective
    model: Any
    teacher: Teacher | None
    pretrained: dict | None       # init.workdir's variables (host arrays), training/finetune.py
    total_steps: int
    steps_per_epoch: int
    steps_per_call: int
    init_state: Callable          # seeds[S] -> stacked initial state (jitted, replicated)
    train_steps: Callable         # (state, metric_sums, teacher_variables, data, inputs[K, S, B...])
    eval_step: Callable           # (params, batch_stats, batch) -> stacked sums
    single_step: Callable         # the job's step (not jitted), for metric shapes
    student_shape: tuple = ()     # (H, W, C) of the student's and the teacher's inputs (at_jax/data/views.py)
    teacher_shape: tuple = ()

    @property
    def data(self) -> dict:
        """Device-resident train and test arrays (the on-device path; empty when streaming)."""
        return self.inputs.data

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
    writer_names(config.get("metrics", {}).get("writers", "jsonl"))   # unknown names, wandb not installed


def total_steps(config: ml_collections.ConfigDict, num_train: int) -> int:
    """Train steps of a run: ``num_train_steps`` when > 0, else ``num_epochs`` whole epochs."""
    if config.num_train_steps > 0:
        return int(config.num_train_steps)
    return int(config.num_epochs) * (num_train // config.batch_size)


def augmentation(config: ml_collections.ConfigDict, inputs: Any) -> tuple[int, bool]:
    """(crop padding, flip) of the on-device augmentation from ``config.augment``, defaulting to the dataset's
    recommendation; streamed batches come augmented from the host (RandomResizedCrop + flip): (0, False)."""
    if inputs.kind == "stream":
        return 0, False
    dataset = inputs.dataset
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


def mixing_and_averaging(config: ml_collections.ConfigDict) -> dict:
    """The step's mixup / CutMix alphas (``config.augment``) and EMA decay (``config.ema``), checked."""
    augment, ema = config.get("augment", {}), config.get("ema", {})
    settings = {"mixup_alpha": augment.get("mixup_alpha", 0.0) or 0.0,
                "cutmix_alpha": augment.get("cutmix_alpha", 0.0) or 0.0, "ema_decay": ema.get("decay", 0.0) or 0.0}
    for key in ("mixup_alpha", "cutmix_alpha"):
        if not math.isfinite(settings[key]) or settings[key] < 0:
            raise ConfigError(f"augment.{key} must be a finite number >= 0 (0 = off), got {settings[key]}")
    if not 0 <= settings["ema_decay"] < 1:
        raise ConfigError(f"ema.decay must be in [0, 1) (0 = off), got {settings['ema_decay']}")
    if ema.get("use_for_final", False) and not settings["ema_decay"]:
        raise ConfigError("ema.use_for_final needs ema.decay > 0 (e.g. 0.999)")
    return settings


def image_views(config: ml_collections.ConfigDict) -> ImageViews:
    """``dataset.image_size`` and ``teacher.image_size``, checked; input-gradient transfer needs one size."""
    try:
        views = configured_sizes(config.dataset, config.teacher.get("image_size", 0))
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if views.differ and config.loss.get("grad_at_beta", 0):
        raise ConfigError("loss.grad_at_beta compares input gradients pixel by pixel: it needs teacher.image_size "
                          "equal to the student's (dataset.image_size)")
    return views


def view_shapes(views: ImageViews, delivered: tuple) -> tuple[tuple, tuple]:
    """(student, teacher) input shapes (H, W, C) for images delivered with shape ``delivered``."""
    if delivered[0] != delivered[1] and (views.student or views.teacher):
        raise ConfigError(f"dataset.image_size / teacher.image_size need square images, the data's are "
                          f"{delivered[0]}x{delivered[1]}")
    student, teacher = views.sizes(delivered[0])
    return ((student, student, delivered[2]) if views.student else tuple(delivered),
            (teacher, teacher, delivered[2]) if views.teacher else tuple(delivered))


def eval_chunk_size(config: ml_collections.ConfigDict, mesh) -> int:
    """Examples per eval batch: ``eval_batch_size`` (0: ``batch_size``) rounded down to whole devices."""
    return max(mesh.size, (config.get("eval_batch_size", 0) or config.batch_size) // mesh.size * mesh.size)


def check_batch_split(config: ml_collections.ConfigDict, mesh) -> None:
    """Raises :class:`ConfigError` unless the batch splits over the mesh's devices and the processes."""
    try:
        sharding.check_batch_size(config.batch_size, mesh)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def check_batch(config: ml_collections.ConfigDict, mesh, num_train: int) -> int:
    """The job's train steps; raises :class:`ConfigError` unless the batch splits over the mesh and fits the
    training set."""
    check_batch_split(config, mesh)
    if config.batch_size > num_train:
        raise ConfigError(f"batch_size {config.batch_size} exceeds the {num_train} training examples")
    return total_steps(config, num_train)


def load_inputs(config: ml_collections.ConfigDict, mesh, views: ImageViews) -> tuple[Any, int]:
    """The job's inputs (on device or streamed) and its train steps (checked against the batch size and the
    mesh; the split is checked before any data is read)."""
    check_batch_split(config, mesh)
    kind, dataset = input_data(config.dataset, views)
    steps = check_batch(config, mesh, dataset.num_train)
    workers = int(config.dataset.get("workers", -1))
    inputs = make_inputs(kind, dataset, config.batch_size, eval_chunk_size(config, mesh), mesh, num_steps=steps,
                         workers=default_workers() if workers < 0 else workers, eval_size=views.student)
    return inputs, steps


def tap_named_layers(objective: Objective, model_name: str, model: Any,
                     teacher: Teacher | None) -> tuple[Any, Teacher | None]:
    """Student and teacher whose features are the layers ``loss.at_layers`` names (unchanged without)."""
    layers = objective.option("at_layers")
    if not layers or teacher is None:
        return model, teacher
    return (tap_layers(model, [student for student, _ in layers], model_name),
            dataclasses.replace(teacher, model=tap_layers(teacher.model, [path for _, path in layers], teacher.name)))


def check_names(config: ml_collections.ConfigDict, objective: Objective, model: Any, teacher: Teacher | None,
                sample: jax.Array, teacher_sample: jax.Array) -> None:
    """Raises :class:`ConfigError` when a name or index the config gives matches nothing in the models
    (``loss.at_pairs``, ``loss.at_layers``, ``freeze.modules``); works on shapes only (nothing is computed)."""
    (_, student_features), variables = jax.eval_shape(
        lambda: model.init_with_output(jax.random.PRNGKey(0), sample, train=False))
    check_freeze(config.get("freeze", {}), variables["params"], config.model)
    if teacher is not None:
        teacher_features = jax.eval_shape(
            lambda variables: teacher.model.apply(variables, teacher_sample, train=False)[1], teacher.variables)
        pairs = objective.pairs(len(student_features), len(teacher_features))
        if not pairs and objective.pairs_features:
            raise ConfigError(f"{config.model} ({len(student_features)} features) and the teacher "
                              f"{teacher.name} ({len(teacher_features)}) have no feature pair to transfer; name "
                              "layers with loss.at_layers (python -m at_jax.inspect --model=NAME lists them)")


def set_up(config: ml_collections.ConfigDict, job: multi_run.Job) -> Setup:
    """Builds the job's :class:`Setup` (see the module docstring) on this process's devices, from its data."""
    check_config(config)
    use_compilation_cache(config.get("compilation_cache_dir", "auto"))
    mesh = sharding.make_mesh()
    views = image_views(config)
    inputs, steps = load_inputs(config, mesh, views)
    init_workdir = config.get("init", {}).get("workdir", "")
    return build_setup(config, job, mesh, inputs, steps, views,
                       teacher_source=lambda num_classes, dtype: load_teacher(config, num_classes, mesh, dtype),
                       pretrained=lambda: load_pretrained(init_workdir, config.model) if init_workdir else None)


def build_setup(config: ml_collections.ConfigDict, job: multi_run.Job, mesh, inputs: Any, steps: int,
                views: ImageViews, *, teacher_source: Callable, pretrained: Callable) -> Setup:
    """The models, teacher, objective, optimizer and steps of a job over ``inputs`` on ``mesh``: real
    inputs and a loaded teacher (:func:`set_up`), or their shapes (:mod:`at_jax.planning`, a run compiled for
    devices it does not have). ``teacher_source(num_classes, dtype) -> Teacher``; the defaults of the mesh's
    platform (steps per call, multi-run mode) apply."""
    platform = mesh.devices.flat[0].platform
    dtype = compute_dtype(config.compute_dtype)
    teacher_dtype = compute_dtype(config.teacher.get("compute_dtype") or config.compute_dtype)
    objective = build_objective(multi_run.structure_loss_config(config.loss, job.specs))
    model = models.create(config.model, inputs.num_classes, dtype=dtype, **config.get("model_kwargs", {}))
    teacher = teacher_source(inputs.num_classes, teacher_dtype) if objective.uses_teacher else None
    model, teacher = tap_named_layers(objective, config.model, model, teacher)
    student_shape, teacher_shape = view_shapes(views, inputs.image_shape)
    sample, teacher_sample = jnp.zeros((1,) + student_shape, dtype), jnp.zeros((1,) + teacher_shape, teacher_dtype)
    check_names(config, objective, model, teacher, sample, teacher_sample)
    try:
        transform, schedule = make_optimizer(config.optimizer, steps, config.batch_size)
        transform = freeze_transform(transform, config.get("freeze", {}))
    except ValueError as error:
        raise ConfigError(str(error)) from None
    pad, flip = augmentation(config, inputs)
    step_config = StepConfig(total_steps=steps, pad=pad, flip=flip, mean=inputs.mean, std=inputs.std,
                             compute_dtype=dtype, teacher_dtype=teacher_dtype,
                             student_train_mode=not config.get("freeze", {}).get("batch_norm", False),
                             num_classes=inputs.num_classes, student_size=student_shape[0],
                             teacher_size=teacher_shape[0], image_shape=tuple(inputs.image_shape),
                             **mixing_and_averaging(config))
    mode = multi_run.resolve_mode(config.get("parallel_mode", "auto"), job.size, platform, mesh.size)
    single_step = multi_run.job_train_step(
        make_train_step(model, teacher and teacher.model, objective, transform, schedule, step_config),
        job.size, mode)
    eval_step = multi_run.job_eval_step(make_eval_step(model, step_config, inputs.num_classes), job.size, mode)
    init = lambda seed, teacher_variables: create_train_state(
        model, transform, sample, seed, objective=objective, teacher_model=teacher and teacher.model,
        teacher_variables=teacher_variables, ema=step_config.ema_decay > 0, teacher_sample=teacher_sample)
    return Setup(config=config, inputs=inputs, mesh=mesh, objective=objective, model=model, teacher=teacher,
                 pretrained=pretrained(), total_steps=steps, steps_per_epoch=inputs.num_train // config.batch_size,
                 steps_per_call=int(config.get("steps_per_call", 0)) or default_steps_per_call(platform),
                 init_state=multi_run.stacked_init(init, sharding.replicated(mesh)),
                 train_steps=jax.jit(make_multi_step(single_step), donate_argnums=(0, 1)),
                 eval_step=jax.jit(eval_step), single_step=single_step, student_shape=student_shape,
                 teacher_shape=teacher_shape)

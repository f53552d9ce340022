"""The trainer's job on devices it does not have, from shapes alone.

:func:`abstract_setup` runs the trainer's own :func:`~at_jax.training.setup.build_setup` (the same model,
objective, optimizer, state, multi-run mode, steps per call and shardings as ``python -m at_jax.train``) with
inputs and a teacher made of ``jax.ShapeDtypeStruct``: the dataset's shapes (:mod:`at_jax.data.shapes`), the
teacher's variables as its initialisation's shapes. :func:`step_arguments` gives the abstract arguments, with
their shardings, of the compiled train call (``steps_per_call`` steps) and of the eval step.
"""
from __future__ import annotations

import dataclasses
import types
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from at_jax import models
from at_jax.errors import ConfigError
from at_jax.data.shapes import DatasetShape, dataset_shape
from at_jax.training import multi_run, sharding
from at_jax.training.setup import (Setup, build_setup, check_batch, check_config, eval_chunk_size, image_views,
                                   view_shapes)
from at_jax.training.teacher import Teacher


def placed(tree: Any, placement: jax.sharding.Sharding) -> Any:
    """``tree``'s leaves as ``ShapeDtypeStruct`` with ``placement``."""
    return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=placement), tree)


class AbstractInputs:
    """What the trainer's inputs (:mod:`at_jax.training.inputs`) tell a job, without data: the dataset's
    facts, the abstract device-resident arrays (the in-memory path) and the shapes of train and eval batches."""

    def __init__(self, shape: DatasetShape, batch_size: int, eval_chunk: int, mesh, eval_size: int):
        self.kind, self.batch_size, self.eval_chunk, self.mesh = shape.pipeline, batch_size, eval_chunk, mesh
        self.num_train, self.num_classes, self.image_shape = shape.num_train, shape.num_classes, shape.image_shape
        channels = shape.image_shape[-1]
        self.mean, self.std = shape.mean, shape.std
        train_images = jax.ShapeDtypeStruct((shape.num_train,) + shape.image_shape, np.uint8)
        self.dataset = types.SimpleNamespace(pad=shape.pad, flip=shape.flip, train_images=train_images)
        padded_eval = -(-shape.num_eval // eval_chunk) * eval_chunk
        self.data = {} if self.kind == "stream" else placed({
            "train_images": jax.ShapeDtypeStruct((shape.num_train, int(np.prod(shape.image_shape))), np.uint8),
            "train_labels": jax.ShapeDtypeStruct((shape.num_train,), np.int32),
            "test_images": jax.ShapeDtypeStruct((padded_eval,) + shape.image_shape, np.uint8),
            "test_labels": jax.ShapeDtypeStruct((padded_eval,), np.int32),
            "test_mask": jax.ShapeDtypeStruct((padded_eval,), np.float32)}, sharding.replicated(mesh))
        side = eval_size if self.kind == "stream" and eval_size else shape.image_shape[0]
        self.eval_image_shape = (side, side, channels) if self.kind == "stream" else shape.image_shape

    def train_spec(self, runs: int) -> Any:
        if self.kind == "device":
            return jax.ShapeDtypeStruct((runs, self.batch_size), np.int32)
        return {"images": jax.ShapeDtypeStruct((runs, self.batch_size) + self.image_shape, np.uint8),
                "labels": jax.ShapeDtypeStruct((runs, self.batch_size), np.int32)}

    def eval_batch(self) -> dict:
        """One eval batch ``{"images", "labels", "mask"}``, sharded over the mesh."""
        chunk = self.eval_chunk
        return placed({"images": jax.ShapeDtypeStruct((chunk,) + self.eval_image_shape, np.uint8),
                       "labels": jax.ShapeDtypeStruct((chunk,), np.int32),
                       "mask": jax.ShapeDtypeStruct((chunk,), np.float32)}, sharding.batch_sharded(self.mesh))


def abstract_teacher(config: ml_collections.ConfigDict, num_classes: int, dtype: Any, mesh,
                     input_shape: tuple) -> Teacher:
    """``teacher.model`` (with ``teacher.model_kwargs``) and its variables' shapes, replicated over ``mesh``
    (a teacher workdir is not opened: its model is the one the config names)."""
    if not config.teacher.get("model"):
        raise ConfigError("compiling without the teacher's checkpoint builds it from teacher.model: set it "
                          "(e.g. --config.teacher.model=resnet34)")
    model = models.create(config.teacher.model, num_classes, dtype=dtype, **config.teacher.get("model_kwargs", {}))
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1,) + input_shape, dtype),
                                                  train=False))
    return Teacher(config.teacher.model, model, placed(variables, sharding.replicated(mesh)))


def abstract_setup(config: ml_collections.ConfigDict, devices: list,
                   counts: Mapping[str, int] | None = None) -> tuple[Setup, multi_run.Job]:
    """The job of ``config`` (a single run or ``parallel_runs``) set up over ``devices`` as the trainer would,
    from shapes; ``counts``: dataset sizes for a set :mod:`at_jax.data.shapes` cannot know."""
    check_config(config)
    job = multi_run.plan_job(config, "compile_for")   # plans names only; nothing is read or written
    mesh = sharding.make_mesh(list(devices))
    views = image_views(config)
    shape = dataset_shape(config.dataset, views, counts)
    steps = check_batch(config, mesh, shape.num_train)
    inputs = AbstractInputs(shape, config.batch_size, eval_chunk_size(config, mesh), mesh, views.student)
    teacher_shape = view_shapes(views, shape.image_shape)[1]
    setup = build_setup(config, job, mesh, inputs, steps, views, pretrained=lambda: None,
                        teacher_source=lambda num_classes, dtype: abstract_teacher(config, num_classes, dtype, mesh,
                                                                                   teacher_shape))
    return setup, job


@dataclasses.dataclass(frozen=True)
class StepArguments:
    train: tuple    # (state, metric_sums, teacher_variables, data, inputs[K, runs, batch, ...])
    eval: tuple     # (params, batch_stats, batch)


def step_arguments(setup: Setup, job: multi_run.Job, steps_per_call: int | None = None) -> StepArguments:
    """Abstract arguments of the train call (``steps_per_call`` steps, default the job's) and of the eval step."""
    replicated = sharding.replicated(setup.mesh)
    seeds = jax.ShapeDtypeStruct((job.size,), np.int32)
    state = placed(jax.eval_shape(setup.init_state, seeds, setup.teacher_variables), replicated)
    step_inputs = setup.inputs.train_spec(job.size)
    sums = placed(jax.eval_shape(setup.single_step, state, setup.teacher_variables, setup.data, step_inputs)[1],
                  replicated)
    count = steps_per_call or setup.steps_per_call
    batch_axis = NamedSharding(setup.mesh, PartitionSpec(None, None, sharding.DATA_AXIS))
    inputs = placed(jax.tree.map(lambda leaf: jax.ShapeDtypeStruct((count,) + leaf.shape, leaf.dtype), step_inputs),
                    batch_axis)
    return StepArguments(train=(state, sums, setup.teacher_variables, setup.data, inputs),
                         eval=(state["params"]["model"], state["batch_stats"], setup.inputs.eval_batch()))

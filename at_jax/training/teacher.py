"""The frozen teacher: a finished run's model and variables, checked against the student's task."""
from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections
from absl import logging

from at_jax.errors import CheckpointError
from at_jax.training import sharding
from at_jax.training.checkpoint import load_run, model_from_config, variables_of


@dataclasses.dataclass(frozen=True)
class Teacher:
    name: str          # the model name
    model: Any         # flax module (in the teacher's compute dtype)
    variables: Any     # replicated over the mesh; never differentiated, never checkpointed with the student


def load_teacher(config: ml_collections.ConfigDict, num_classes: int, mesh, dtype: Any) -> Teacher:
    """The teacher named by ``config.teacher.workdir``; refuses one of another model, class count or dataset."""
    run = load_run(config.teacher.workdir, role="teacher")
    saved_model = run.config.get("model")
    if config.teacher.model and config.teacher.model != saved_model:
        raise CheckpointError(f"teacher workdir {config.teacher.workdir} holds model {saved_model!r}, but "
                              f"teacher.model is {config.teacher.model!r}")
    if run.config.get("num_classes") != num_classes:
        raise CheckpointError(f"teacher has {run.config.get('num_classes')} classes, the student's "
                              f"dataset has {num_classes}")
    saved_dataset = run.config.get("dataset", {}).get("name")
    if saved_dataset != config.dataset.name:
        raise CheckpointError(f"teacher was trained on {saved_dataset!r}, the student on {config.dataset.name!r}")
    trained_size = run.config.get("dataset", {}).get("image_size", 0)
    teacher_size = config.teacher.get("image_size", 0) or config.dataset.get("image_size", 0)
    if trained_size and teacher_size and trained_size != teacher_size:
        logging.warning("the teacher was trained at %d px and sees %d px here (teacher.image_size)", trained_size,
                        teacher_size)
    logging.info("teacher: %s from %s (step %d)", saved_model, config.teacher.workdir, run.step)
    return Teacher(saved_model, model_from_config(run.config, dtype=dtype),
                   sharding.replicate(variables_of(run), mesh))

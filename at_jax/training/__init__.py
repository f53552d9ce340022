"""Training: state, step, loop, checkpoints, metrics, sharding and multi-run jobs.

- :mod:`~at_jax.training.loop`: ``train_and_evaluate(config, workdir)``, the stages of a job.
- :mod:`~at_jax.training.setup`: config checks, data, models, teacher, objective and compiled steps.
- :mod:`~at_jax.training.state`: the train state pytree and its one initialisation.
- :mod:`~at_jax.training.step`: the compiled train and eval steps.
- :mod:`~at_jax.training.batches`: batch order (a function of seed and step) and device-resident data.
- :mod:`~at_jax.training.teacher`: the frozen teacher.
- :mod:`~at_jax.training.optimizer`: optimizers and schedules by name (optax); SGD + step: the official recipe.
- :mod:`~at_jax.training.checkpoint`: orbax checkpoints, finished runs, ``load_model``.
- :mod:`~at_jax.training.metrics`: metrics.jsonl and the other writers, progress with ETA.
- :mod:`~at_jax.training.writers`: ``config.metrics.writers``: TensorBoard, wandb.
- :mod:`~at_jax.training.run_figures`: a finished run's attention figure, for the figure commands and writers.
- :mod:`~at_jax.training.workdir`: checks before writing, config.json, resume compatibility.
- :mod:`~at_jax.training.sharding`: the device mesh, multi-host set-up, batch sharding.
- :mod:`~at_jax.training.multi_run`: jobs of one or several runs in one program.
- :mod:`~at_jax.training.cpu_defaults`: XLA:CPU flags, steps per call, multi-run mode on CPU.
"""
from typing import Any

__all__ = ["train_and_evaluate"]


def __getattr__(name: str) -> Any:
    """``train_and_evaluate`` on first use: the benchmarks import the step and state modules on machines
    without ml_collections (the trainer's config library)."""
    if name == "train_and_evaluate":
        from at_jax.training.loop import train_and_evaluate  # pylint: disable=import-outside-toplevel
        return train_and_evaluate
    raise AttributeError(f"module 'at_jax.training' has no attribute {name!r}")

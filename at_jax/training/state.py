"""The train state: a plain pytree ``{"step", "params", "batch_stats", "opt_state", "rng"}``, with ``"ema"``
(``{"params", "batch_stats"}``, the student's moving average) when ``ema.decay > 0``.

``params = {"model": ..., "adapters": ...}`` (adapters only when a term has trainable parameters, F-ActT).
:func:`create_train_state` is the one initialisation, used by the trainer (vmapped over the seeds of a
job) and by the benchmarks, so that what is benchmarked is what is trained.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from at_jax.errors import ConfigError
from at_jax.losses import Objective

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def compute_dtype(name: str) -> Any:
    """The jnp dtype of a ``compute_dtype`` setting."""
    if name not in DTYPES:
        raise ConfigError(f"unknown compute dtype {name!r}; valid: {', '.join(DTYPES)}")
    return DTYPES[name]


def create_train_state(model: nn.Module, transform: optax.GradientTransformation, sample: jax.Array,
                       seed: Any, *, objective: Objective | None = None, teacher_model: nn.Module | None = None,
                       teacher_variables: Any = None, ema: bool = False,
                       teacher_sample: jax.Array | None = None) -> dict:
    """The initial state of run ``seed`` (an int or a traced int32): the model initialised from
    ``PRNGKey(seed)``, the objective's trainable parameters (F-ActT adapters, from the teacher's features on
    ``teacher_sample``, default ``sample``), the optimizer state, the run's augmentation key
    ``PRNGKey(seed + 1)`` and, with ``ema``, the moving average starting at the initial model."""
    model_key, adapter_key = jax.random.split(jax.random.PRNGKey(seed))
    variables = model.init(model_key, sample, train=False)
    params = {"model": variables["params"]}
    if objective is not None and objective.needs_adapters:
        student_features = model.apply(variables, sample, train=False)[1]
        teacher_input = sample if teacher_sample is None else teacher_sample
        teacher_features = teacher_model.apply(teacher_variables, teacher_input, train=False)[1]
        params["adapters"] = objective.init_adapters(adapter_key, student_features, teacher_features)
    state = {"step": jnp.zeros((), jnp.int32), "params": params, "batch_stats": variables.get("batch_stats", {}),
             "opt_state": transform.init(params), "rng": jax.random.PRNGKey(seed + 1)}
    if ema:
        state["ema"] = {"params": params["model"], "batch_stats": state["batch_stats"]}
    return state

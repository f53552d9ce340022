"""The at_jax side of the benchmarks: the library's own train step, composed as the trainer does.

``make_jax_step`` builds student, frozen teacher (random weights: speed does not depend on them),
objective (``build_objective``), optimizer (``make_optimizer``: SGD momentum 0.9, weight decay 5e-4)
and the initial state (``create_train_state``, the trainer's own initialisation), then ``make_train_step``
(and ``make_multi_step`` for K steps in one ``lax.scan``) jitted with the state donated, as
``at_jax.training.train_and_evaluate`` does.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from at_jax import models
from at_jax.losses import build_objective
from at_jax.training import multi_run
from at_jax.training.optimizer import make_optimizer
from at_jax.training.state import create_train_state
from at_jax.training.step import StepConfig, make_multi_step, make_train_step

METHODS = ("none", "at", "kd", "at+kd", "grad_at")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
AT_BETA, KD_ALPHA, KD_TEMPERATURE, GRAD_AT_BETA = 1e3, 0.9, 4.0, 1.0


def loss_config(method: str) -> dict:
    """The ``build_objective`` fields of a benchmark method."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {METHODS}")
    fields: dict[str, Any] = {}
    if method in ("at", "at+kd"):
        fields["at_beta"] = AT_BETA
    if method in ("kd", "at+kd"):
        fields.update(kd_alpha=KD_ALPHA, kd_temperature=KD_TEMPERATURE)
    if method == "grad_at":
        fields["grad_at_beta"] = GRAD_AT_BETA
    return fields


@dataclasses.dataclass
class JaxStep:
    """A compiled-on-first-call step and everything it is called with."""
    function: Any             # jitted (state, [metric_sums,] teacher_variables, data, indices)
    state: dict
    teacher_variables: Any
    metric_sums: Any          # None for the single step
    steps_per_call: int

    def arguments(self, data: dict, indices: jax.Array) -> tuple:
        if self.metric_sums is None:
            return (self.state, self.teacher_variables, data, indices)
        return (self.state, self.metric_sums, self.teacher_variables, data, indices)

    def call(self, data: dict, indices: jax.Array, function: Any = None) -> None:
        """Runs one call (``steps_per_call`` steps), keeps the new (donated) state, waits for it."""
        outputs = (function or self.function)(*self.arguments(data, indices))
        if self.metric_sums is None:
            self.state = outputs[0]
        else:
            self.state, self.metric_sums = outputs
        jax.block_until_ready(self.state)


def make_jax_step(student: str, teacher: str | None, method: str, *, num_classes: int, dtype: str,
                  steps_per_call: int, pad: int, flip: bool, mean, std, total_steps: int = 100_000,
                  image_shape: tuple[int, int, int] = (32, 32, 3), seed: int = 0,
                  scan_unroll: bool = False, parallel_runs: int = 1, parallel_mode: str = "auto") -> JaxStep:
    """The library step for ``method`` (see :data:`METHODS`), jitted with donation.

    ``pad``/``flip`` are the in-step augmentation (0/False: none, the step-throughput setting).
    ``scan_unroll`` (prototype, K > 1 only) replaces ``make_multi_step`` by the same scan fully unrolled:
    on XLA:CPU the weight- and input-gradient convolutions inside a ``while`` body are not canonicalised
    and fall back to a generic loop emitter, 10-20x slower than in straight-line code.
    """
    objective = build_objective(loss_config(method))
    compute_dtype = DTYPES[dtype]
    model = models.create(student, num_classes, dtype=compute_dtype)
    teacher_model = models.create(teacher, num_classes, dtype=compute_dtype) if objective.uses_teacher else None
    transform, schedule = make_optimizer({"learning_rate": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
                                          "decay_at": (0.3, 0.6, 0.8), "decay_factor": 0.2}, total_steps)
    sample = jnp.zeros((1,) + tuple(image_shape), compute_dtype)
    teacher_key = jax.random.fold_in(jax.random.PRNGKey(seed), 1 << 20)
    teacher_variables = (jax.jit(lambda: teacher_model.init(teacher_key, sample, train=False))()
                         if teacher_model is not None else None)
    init_state = lambda run_seed: create_train_state(model, transform, sample, run_seed, objective=objective,
                                                     teacher_model=teacher_model,
                                                     teacher_variables=teacher_variables)
    if parallel_runs > 1:
        state = jax.jit(jax.vmap(init_state))(jnp.arange(parallel_runs) + seed)
    else:
        state = jax.jit(init_state)(seed)
    step_config = StepConfig(total_steps=total_steps, pad=pad, flip=flip, mean=tuple(mean), std=tuple(std),
                             compute_dtype=compute_dtype, teacher_dtype=compute_dtype)
    single_step = make_train_step(model, teacher_model, objective, transform, schedule, step_config)
    index_shape = (parallel_runs, 1) if parallel_runs > 1 else (1,)
    if parallel_runs > 1:
        single_step = multi_run.job_train_step(single_step, parallel_runs, parallel_mode)
    if steps_per_call == 1:
        return JaxStep(jax.jit(single_step, donate_argnums=(0,)), state, teacher_variables, None, 1)
    data_shape = {"train_images": jax.ShapeDtypeStruct((1,) + tuple(image_shape), jnp.uint8),
                  "train_labels": jax.ShapeDtypeStruct((1,), jnp.int32)}
    metric_shapes = jax.eval_shape(single_step, state, teacher_variables, data_shape,
                                   jax.ShapeDtypeStruct(index_shape, jnp.int32))[1]
    metric_sums = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), metric_shapes)
    multi_step = unrolled_multi_step(single_step) if scan_unroll else make_multi_step(single_step)
    return JaxStep(jax.jit(multi_step, donate_argnums=(0, 1)), state, teacher_variables, metric_sums,
                   steps_per_call)


def unrolled_multi_step(step: Any) -> Any:
    """``at_jax.training.step.make_multi_step`` with ``lax.scan(..., unroll=True)`` (K copies of the step in
    straight-line code: K times the compile time, no ``while`` loop)."""

    def multi_step(state, metric_sums, teacher_variables, data, indices):
        def body(carry, step_indices):
            current_state, sums = carry
            current_state, metrics = step(current_state, teacher_variables, data, step_indices)
            return (current_state, jax.tree.map(jnp.add, sums, metrics)), None

        (state, metric_sums), _ = jax.lax.scan(body, (state, metric_sums), indices, unroll=True)
        return state, metric_sums

    return multi_step


def compile_with_costs(jax_step: JaxStep, data: dict, indices: jax.Array) -> tuple[Any, dict]:
    """AOT-compiles the step for these arguments; returns (compiled, facts): XLA cost-analysis FLOPs
    per call and the compiled program's memory analysis (bytes)."""
    compiled = jax_step.function.lower(*jax_step.arguments(data, indices)).compile()
    facts: dict[str, Any] = {}
    try:
        costs = compiled.cost_analysis()
        if isinstance(costs, (list, tuple)):
            costs = costs[0] if costs else {}
        facts["flops_per_call"] = float(costs.get("flops", 0.0)) or None
        facts["bytes_accessed_per_call"] = float(costs.get("bytes accessed", 0.0)) or None
    except Exception as error:  # cost analysis is backend-dependent
        facts["cost_analysis_error"] = repr(error)
    try:
        memory = compiled.memory_analysis()
        if memory is not None:
            facts["xla_temp_bytes"] = int(memory.temp_size_in_bytes)
            facts["xla_argument_bytes"] = int(memory.argument_size_in_bytes)
            facts["xla_output_bytes"] = int(memory.output_size_in_bytes)
    except Exception as error:
        facts["memory_analysis_error"] = repr(error)
    return compiled, facts


def device_peak_bytes() -> int | None:
    """Peak bytes in use on the first device (GPU/TPU); None where the backend keeps no statistics."""
    stats = jax.devices()[0].memory_stats()
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def step_data(batch_size: int, steps_per_call: int, num_classes: int, image_size: int = 32,
              seed: int = 0, parallel_runs: int = 1) -> tuple[dict, jax.Array]:
    """One batch of uint8 images resident on the device and the indices of ``steps_per_call`` steps
    over it (each step of a multi-step call, and each of ``parallel_runs`` runs, reuses the same batch)."""
    rng = np.random.default_rng(seed)
    data = {"train_images": jnp.asarray(rng.integers(0, 256, (batch_size, image_size, image_size, 3),
                                                     dtype=np.uint8)),
            "train_labels": jnp.asarray(rng.integers(0, num_classes, (batch_size,), dtype=np.int32))}
    indices = jnp.arange(batch_size, dtype=jnp.int32)
    if parallel_runs > 1:
        indices = jnp.tile(indices[None], (parallel_runs, 1))
    if steps_per_call > 1:
        indices = jnp.tile(indices[None], (steps_per_call,) + (1,) * indices.ndim)
    return data, indices

"""The compiled steps: one train step (teacher forward + student objective + optax update) and evaluation.

Everything a step needs arrives as arguments (state, frozen teacher variables, device-resident data, the
step's example indices), so one program serves every step: no recompilation after the first. Augmentation
(reflect-pad, crop, flip) and normalisation run inside the step on uint8 data; the augmentation key of step
``s`` is ``fold_in(state["rng"], s)``, so a step's batch and augmentation depend only on (seed, s).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from at_jax.data.augment import augment_batch, normalize

State = dict  # {"step", "params", "batch_stats", "opt_state", "rng"}


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """Static facts a step is compiled for."""
    total_steps: int
    pad: int
    flip: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    compute_dtype: Any = jnp.float32
    teacher_dtype: Any = jnp.float32


def model_variables(params: Any, batch_stats: Any) -> dict:
    variables = {"params": params}
    if batch_stats:
        variables["batch_stats"] = batch_stats
    return variables


def teacher_forward(teacher_model: nn.Module | None, teacher_variables: Any, x: jax.Array):
    """The frozen teacher: inference-mode batch norm, no gradient."""
    if teacher_model is None:
        return None, None
    logits, features = teacher_model.apply(teacher_variables, x, train=False)
    return jax.lax.stop_gradient(logits), jax.lax.stop_gradient(tuple(features))


def make_train_step(model: nn.Module, teacher_model: nn.Module | None, objective: Callable,
                    transform: optax.GradientTransformation, schedule: optax.Schedule,
                    step_config: StepConfig) -> Callable:
    """Returns ``step(state, teacher_variables, data, indices) -> (state, metrics)`` (not yet jitted)."""

    def step(state: State, teacher_variables: Any, data: dict, indices: jax.Array):
        step_index = state["step"]
        augment_key = jax.random.fold_in(state["rng"], step_index)
        images = jnp.take(data["train_images"], indices, axis=0)
        labels = jnp.take(data["train_labels"], indices, axis=0)
        images = augment_batch(augment_key, images, pad=step_config.pad, flip=step_config.flip)
        x = normalize(images, jnp.asarray(step_config.mean), jnp.asarray(step_config.std),
                      step_config.compute_dtype)
        progress = step_index.astype(jnp.float32) / step_config.total_steps
        teacher_logits, teacher_features = teacher_forward(
            teacher_model, teacher_variables, x.astype(step_config.teacher_dtype))

        def loss_fn(params):
            (logits, features), updates = model.apply(
                model_variables(params["model"], state["batch_stats"]), x, train=True,
                mutable=["batch_stats"])
            total, terms = objective(params.get("adapters", {}), logits, features, teacher_logits,
                                     teacher_features, labels, progress)
            terms = dict(terms)
            terms["accuracy"] = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
            return total, (terms, updates.get("batch_stats", {}))

        (_, (terms, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = transform.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        terms["learning_rate"] = schedule(step_index)
        new_state = {"step": step_index + 1, "params": params, "batch_stats": batch_stats,
                     "opt_state": opt_state, "rng": state["rng"]}
        return new_state, {name: jnp.asarray(value, jnp.float32) for name, value in terms.items()}

    return step


def make_accumulating_step(step: Callable) -> Callable:
    """``(state, metric_sums, ...) -> (state, metric_sums + metrics)``: metrics stay on the device between
    logs, so the host does not wait for every step."""

    def accumulating_step(state, metric_sums, *args):
        state, metrics = step(state, *args)
        return state, jax.tree.map(jnp.add, metric_sums, metrics)

    return accumulating_step


def make_eval_step(model: nn.Module, step_config: StepConfig, num_classes: int,
                   batch_sharding: Any = None) -> Callable:
    """Returns ``eval_step(params, batch_stats, data, start, chunk_size) -> sums`` over one padded chunk of
    the test set: correct top-1 (and top-5 when there are >= 100 classes), summed cross-entropy, count."""

    def eval_step(params, batch_stats, data: dict, start: jax.Array, chunk_size: int):
        images = jax.lax.dynamic_slice_in_dim(data["test_images"], start, chunk_size)
        labels = jax.lax.dynamic_slice_in_dim(data["test_labels"], start, chunk_size)
        mask = jax.lax.dynamic_slice_in_dim(data["test_mask"], start, chunk_size)
        if batch_sharding is not None:  # split the chunk over devices instead of computing it on each
            images, labels, mask = jax.lax.with_sharding_constraint((images, labels, mask), batch_sharding)
        x = normalize(images, jnp.asarray(step_config.mean), jnp.asarray(step_config.std),
                      step_config.compute_dtype)
        logits, _ = model.apply(model_variables(params, batch_stats), x, train=False)
        logits = logits.astype(jnp.float32)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        sums = {
            "count": jnp.sum(mask),
            "correct": jnp.sum(mask * (jnp.argmax(logits, -1) == labels)),
            "loss": jnp.sum(mask * losses),
        }
        if num_classes >= 100:
            top5 = jax.lax.top_k(logits, 5)[1]
            sums["correct_top5"] = jnp.sum(mask * jnp.any(top5 == labels[:, None], axis=-1))
        return {name: value.astype(jnp.float32) for name, value in sums.items()}

    return eval_step

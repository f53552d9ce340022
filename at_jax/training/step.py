"""The compiled steps: one train step (teacher forward + student objective + optax update) and evaluation.

Everything a step needs arrives as arguments (state, frozen teacher variables, device-resident data, the
step's example indices), so one program serves every step: no recompilation after the first. Augmentation
(reflect-pad, crop, flip) and normalisation run inside the step on uint8 data; the augmentation key of step
``s`` is ``fold_in(state["rng"], s)``, so a step's batch and augmentation depend only on (seed, s). The
objective (all loss terms, :mod:`at_jax.losses`) is summed in :class:`at_jax.losses.Objective` alone.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from at_jax.data.augment import augment_batch, normalize
from at_jax.data.mix import mix_batch
from at_jax.losses import ModelOutputs, Objective, cross_entropy, soft_targets
from at_jax.spatial import resize_antialiased

State = dict  # {"step", "params", "batch_stats", "opt_state", "rng"[, "loss_weights"][, "ema"]}


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
    student_train_mode: bool = True   # False: batch norm frozen (inference mode), see training/finetune.py
    num_classes: int = 0              # for soft targets (label smoothing, mixup); 0: integer labels only
    mixup_alpha: float = 0.0          # at_jax/data/mix.py; 0 = off
    cutmix_alpha: float = 0.0
    ema_decay: float = 0.0            # > 0: state["ema"] = {"params", "batch_stats"} averaged after every update
    student_size: int = 0             # the student's input side, an antialiased resize of the delivered
    teacher_size: int = 0             # images (at_jax/data/views.py); 0 = as delivered
    image_shape: tuple = ()           # (H, W, C) of the device-resident training rows (training/batches.py)


def input_view(x: jax.Array, size: int) -> jax.Array:
    """One network's view of the step's (augmented, mixed, normalised) batch: resized to ``size`` (0 or the
    batch's own size: the batch itself)."""
    return resize_antialiased(x, size) if size else x


def model_variables(params: Any, batch_stats: Any) -> dict:
    variables = {"params": params}
    if batch_stats:
        variables["batch_stats"] = batch_stats
    return variables


def teacher_forward(teacher_model: nn.Module | None, teacher_variables: Any, x: jax.Array) -> ModelOutputs | None:
    """The frozen teacher: inference-mode batch norm, no gradient."""
    if teacher_model is None:
        return None
    logits, features = teacher_model.apply(teacher_variables, x, train=False)
    return ModelOutputs(jax.lax.stop_gradient(logits), jax.lax.stop_gradient(tuple(features)))


def train_batch(step_key: jax.Array, data: dict, inputs: jax.Array | dict, step_config: StepConfig):
    """The step's augmented, normalised inputs and labels: ``inputs`` are example indices into the
    device-resident ``data`` (augmented here with ``step_key``) or a streamed batch ``{"images", "labels"}``
    (augmented on the host)."""
    if isinstance(inputs, dict):
        images, labels = inputs["images"], inputs["labels"]
    else:
        images = jnp.take(data["train_images"], inputs, axis=0)
        if images.ndim == 2:   # one row per image (training/batches.py): back to (N, H, W, C)
            images = images.reshape(inputs.shape + tuple(step_config.image_shape))
        labels = jnp.take(data["train_labels"], inputs, axis=0)
    images = augment_batch(step_key, images, pad=step_config.pad, flip=step_config.flip)
    x = normalize(images, jnp.asarray(step_config.mean), jnp.asarray(step_config.std), step_config.compute_dtype)
    return x, labels


def step_targets(key: jax.Array, x: jax.Array, labels: jax.Array, step_config: StepConfig,
                 label_smoothing: float) -> tuple[jax.Array, jax.Array]:
    """``(x, targets)`` the step trains on: the batch mixed (mixup / CutMix, :mod:`at_jax.data.mix`) and its
    labels as (smoothed, mixed) class distributions; without either, ``x`` and the integer labels unchanged."""
    if not (label_smoothing or step_config.mixup_alpha or step_config.cutmix_alpha):
        return x, labels
    targets = soft_targets(labels, step_config.num_classes, label_smoothing)
    return mix_batch(key, x, targets, mixup_alpha=step_config.mixup_alpha, cutmix_alpha=step_config.cutmix_alpha)


def updated_ema(state: State, params: Any, batch_stats: Any, decay: float) -> dict:
    """``decay * ema + (1 - decay) * new`` for the student's parameters and batch-norm statistics."""
    return {"params": optax.incremental_update(params["model"], state["ema"]["params"], 1.0 - decay),
            "batch_stats": optax.incremental_update(batch_stats, state["ema"]["batch_stats"], 1.0 - decay)}


def network_inputs(x: jax.Array, teacher_model: nn.Module | None, teacher_variables: Any,
                   step_config: StepConfig) -> tuple[jax.Array, ModelOutputs | None]:
    """(the student's view of the batch, the frozen teacher's outputs on its own view)."""
    teacher = teacher_forward(teacher_model, teacher_variables,
                              input_view(x, step_config.teacher_size).astype(step_config.teacher_dtype))
    return input_view(x, step_config.student_size), teacher


def updated_state(state: State, grads: Any, batch_stats: Any, terms: dict, transform: optax.GradientTransformation,
                  schedule: optax.Schedule, step_config: StepConfig) -> State:
    """The state after the optax update (and the EMA); adds the learning rate and the gradient and parameter
    norms to ``terms``."""
    updates, opt_state = transform.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    terms["learning_rate"] = schedule(state["step"])
    terms["grad_norm"] = optax.tree.norm(grads)
    # Non-finite parameters make this non-finite too, so the host's check refuses to save them.
    terms["param_norm"] = optax.tree.norm(params)
    new_state = dict(state, step=state["step"] + 1, params=params, batch_stats=batch_stats, opt_state=opt_state)
    if step_config.ema_decay:
        new_state["ema"] = updated_ema(state, params, batch_stats, step_config.ema_decay)
    return new_state


def make_train_step(model: nn.Module, teacher_model: nn.Module | None, objective: Objective,
                    transform: optax.GradientTransformation, schedule: optax.Schedule,
                    step_config: StepConfig) -> Callable:
    """Returns ``step(state, teacher_variables, data, inputs) -> (state, metrics)`` (not yet jitted); ``inputs``
    as :func:`train_batch` takes them.

    Input-gradient terms differentiate the student's cross-entropy w.r.t. the normalised input x. Batch
    norm: the student's inner gradient is taken in train mode, i.e. with the statistics of the current
    batch (the flip term's second pass with those of the flipped batch); the running statistics are
    updated once per step, from the forward pass on x (the flipped pass's updates are discarded). The
    teacher's input gradient uses its running statistics (inference mode).

    ``state["loss_weights"]`` (optional, ``{key: scalar}``) overrides loss weights at run time (one value
    per run of a sweep, :mod:`at_jax.training.multi_run`); which terms are computed is the objective's.
    """

    def step(state: State, teacher_variables: Any, data: dict, inputs: jax.Array | dict):
        step_key = jax.random.fold_in(state["rng"], state["step"])  # augmentation; dropout fold_in(., 1), mix 2
        x, labels = train_batch(step_key, data, inputs, step_config)
        x, targets = step_targets(jax.random.fold_in(step_key, 2), x, labels, step_config,
                                  objective.option("label_smoothing"))
        progress = state["step"].astype(jnp.float32) / step_config.total_steps
        x, teacher = network_inputs(x, teacher_model, teacher_variables, step_config)

        dropout_key = jax.random.fold_in(step_key, 1)

        def student_loss(model_params, inputs, targets):
            """Cross-entropy of the student in train mode, with (logits, features, new batch stats); models
            with dropout draw it from the step's key (the same masks for every pass of one step)."""
            (logits, features), updates = model.apply(
                model_variables(model_params, state["batch_stats"]), inputs, train=step_config.student_train_mode,
                mutable=["batch_stats"], rngs={"dropout": dropout_key})
            return cross_entropy(logits, targets), (logits, features, updates.get("batch_stats", state["batch_stats"]))

        def teacher_loss(variables, inputs, targets):
            return cross_entropy(teacher_model.apply(variables, inputs, train=False)[0], targets)

        def loss_fn(params):
            total, terms, (logits, _, batch_stats) = objective.student_loss(
                params, student_loss=student_loss, x=x, labels=targets, teacher=teacher,
                teacher_loss=teacher_loss if teacher_model is not None else None,
                teacher_variables=teacher_variables, progress=progress, weights=state.get("loss_weights", {}))
            terms["accuracy"] = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
            return total, (terms, batch_stats)

        (_, (terms, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        new_state = updated_state(state, grads, batch_stats, terms, transform, schedule, step_config)
        return new_state, {name: jnp.asarray(value, jnp.float32) for name, value in terms.items()}

    return step


def make_multi_step(step: Callable) -> Callable:
    """``(state, metric_sums, teacher_variables, data, inputs[K, ...]) -> (state, metric_sums)``.

    K train steps in one compiled ``lax.scan``, so the host does not drive every step; metrics are summed
    on the device until the host reads them at a log step. K = 1 calls the step without a loop: XLA:CPU
    runs convolutions inside a loop body many times slower (jax-ml/jax#12868), so CPU runs use K = 1.
    """

    def multi_step(state, metric_sums, teacher_variables, data, inputs):
        def body(carry, step_inputs):
            current_state, sums = carry
            current_state, metrics = step(current_state, teacher_variables, data, step_inputs)
            return (current_state, jax.tree.map(jnp.add, sums, metrics)), None

        if jax.tree.leaves(inputs)[0].shape[0] == 1:
            (state, metric_sums), _ = body((state, metric_sums), jax.tree.map(lambda leaf: leaf[0], inputs))
        else:
            (state, metric_sums), _ = jax.lax.scan(body, (state, metric_sums), inputs)
        return state, metric_sums

    return multi_step


def make_eval_step(model: nn.Module, step_config: StepConfig, num_classes: int) -> Callable:
    """Returns ``eval_step(params, batch_stats, batch) -> sums`` over one eval batch ``{"images", "labels",
    "mask"}`` (mask 0 on padding): correct top-1 (and top-5 when there are >= 100 classes), summed
    cross-entropy, count."""

    def eval_step(params, batch_stats, batch: dict):
        labels, mask = batch["labels"], batch["mask"]
        x = input_view(normalize(batch["images"], jnp.asarray(step_config.mean), jnp.asarray(step_config.std),
                                 step_config.compute_dtype), step_config.student_size)
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

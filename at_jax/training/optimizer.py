"""The official recipe's optimizer as optax: SGD with momentum, PyTorch-style weight decay, step schedule.

Large-batch recipes (Goyal et al. 2017) are two config keys away from the single-GPU one:
``optimizer.reference_batch_size = B0`` scales the learning rate linearly, ``lr * batch_size / B0``
(0 = the rate as given), and ``optimizer.warmup_steps = W`` ramps it up linearly over the first W steps,
``lr_t = peak * (t + 1) / W`` for t < W, before the step schedule takes over.
"""
from __future__ import annotations

import math
from typing import Mapping

import jax.numpy as jnp
import optax


def peak_learning_rate(optimizer_config: Mapping, batch_size: int | None = None) -> float:
    """``learning_rate``, times ``batch_size / reference_batch_size`` when that key is > 0."""
    reference = optimizer_config.get("reference_batch_size", 0) or 0
    if reference < 0 or (reference and batch_size is None):
        raise ValueError(f"optimizer.reference_batch_size must be >= 0 (and needs the batch size), got {reference}")
    return float(optimizer_config["learning_rate"]) * (batch_size / reference if reference else 1.0)


def learning_rate_schedule(optimizer_config: Mapping, total_steps: int,
                           batch_size: int | None = None) -> optax.Schedule:
    """Piecewise-constant: the peak rate (:func:`peak_learning_rate`) times ``decay_factor`` at each
    fraction in ``decay_at``, after a linear warmup of ``warmup_steps`` (0 = none).

    The CIFAR recipe (×0.2 at epochs 60/120/160 of 200) is ``decay_at=(0.3, 0.6, 0.8)``; fractions make the
    same config meaningful for short runs (``num_train_steps``).
    """
    boundaries = {}
    for fraction in optimizer_config.get("decay_at", ()):
        step = int(round(fraction * total_steps))
        if 0 < step < total_steps:
            boundaries[step] = boundaries.get(step, 1.0) * optimizer_config.get("decay_factor", 0.2)
    steps = optax.piecewise_constant_schedule(peak_learning_rate(optimizer_config, batch_size), boundaries)
    warmup = int(optimizer_config.get("warmup_steps", 0) or 0)
    if warmup < 0:
        raise ValueError(f"optimizer.warmup_steps must be >= 0, got {warmup}")
    if not warmup:
        return steps
    return lambda step: steps(step) * jnp.minimum(1.0, (jnp.asarray(step, jnp.float32) + 1.0) / warmup)


def make_optimizer(optimizer_config: Mapping, total_steps: int,
                   batch_size: int | None = None) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """``optax.sgd`` after ``add_decayed_weights``: weight decay on all parameters is added to the gradient
    before momentum, exactly like ``torch.optim.SGD(weight_decay=...)``."""
    learning_rate = optimizer_config["learning_rate"]
    if not isinstance(learning_rate, (int, float)) or not math.isfinite(learning_rate) or learning_rate < 0:
        raise ValueError(f"optimizer.learning_rate must be a finite non-negative number, got {learning_rate}")
    weight_decay = optimizer_config.get("weight_decay", 0.0)
    if not math.isfinite(weight_decay) or weight_decay < 0:
        raise ValueError(f"optimizer.weight_decay must be finite and >= 0, got {weight_decay}")
    momentum = optimizer_config.get("momentum", 0.9)
    if not 0 <= momentum < 1:
        raise ValueError(f"optimizer.momentum must be in [0, 1), got {momentum}")
    schedule = learning_rate_schedule(optimizer_config, total_steps, batch_size)
    transform = optax.chain(
        optax.add_decayed_weights(weight_decay) if weight_decay else optax.identity(),
        optax.sgd(schedule, momentum=momentum or None, nesterov=bool(optimizer_config.get("nesterov"))),
    )
    return transform, schedule

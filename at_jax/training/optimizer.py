"""The official recipe's optimizer as optax: SGD with momentum, PyTorch-style weight decay, step schedule."""
from __future__ import annotations

import math
from typing import Mapping

import optax


def learning_rate_schedule(optimizer_config: Mapping, total_steps: int) -> optax.Schedule:
    """Piecewise-constant: ``learning_rate`` times ``decay_factor`` at each fraction in ``decay_at``.

    The CIFAR recipe (×0.2 at epochs 60/120/160 of 200) is ``decay_at=(0.3, 0.6, 0.8)``; fractions make the
    same config meaningful for short runs (``num_train_steps``).
    """
    boundaries = {}
    for fraction in optimizer_config.get("decay_at", ()):
        step = int(round(fraction * total_steps))
        if 0 < step < total_steps:
            boundaries[step] = boundaries.get(step, 1.0) * optimizer_config.get("decay_factor", 0.2)
    return optax.piecewise_constant_schedule(optimizer_config["learning_rate"], boundaries)


def make_optimizer(optimizer_config: Mapping, total_steps: int) -> tuple[optax.GradientTransformation,
                                                                         optax.Schedule]:
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
    schedule = learning_rate_schedule(optimizer_config, total_steps)
    transform = optax.chain(
        optax.add_decayed_weights(weight_decay) if weight_decay else optax.identity(),
        optax.sgd(schedule, momentum=momentum or None, nesterov=bool(optimizer_config.get("nesterov"))),
    )
    return transform, schedule

"""The optimizer and learning-rate schedule of a run, by name, through optax.

``optimizer.name``: ``sgd`` (the official recipe's: momentum, PyTorch-style weight decay added to the gradient
before momentum, as ``torch.optim.SGD(weight_decay=...)``), ``adamw`` (decoupled decay, as
``torch.optim.AdamW``), ``lamb`` or ``lars``. ``optimizer.decay_norm_and_bias = False`` keeps weight decay off
parameters with at most one dimension (biases, batch/layer-norm scales and shifts); ``optimizer.clip_norm > 0``
clips the global gradient norm first.

``optimizer.schedule``: ``step`` (the official recipe's: the peak rate times ``decay_factor`` at each fraction
of training in ``decay_at``), ``cosine`` or ``linear`` (from the peak at the end of warmup down to
``end_fraction`` of it at the last step) or ``constant``. Every schedule starts with the same linear warmup
of ``warmup_steps``, ``lr_t = schedule(t) * (t + 1) / W`` for t < W.

Large-batch recipes (Goyal et al. 2017) are two config keys away from the single-GPU one:
``optimizer.reference_batch_size = B0`` scales the learning rate linearly, ``lr * batch_size / B0``
(0 = the rate as given), and the warmup above.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax

#: (default, check) of the numeric keys each optimizer reads besides learning_rate and weight_decay.
_IN_UNIT = lambda value: 0 <= value < 1
OPTIMIZER_KEYS = {"sgd": ("momentum",), "lars": ("momentum",), "adamw": ("b1", "b2", "eps"),
                  "lamb": ("b1", "b2", "eps")}
_KEY_CHECKS = {"momentum": (0.9, _IN_UNIT, "in [0, 1)"), "b1": (0.9, _IN_UNIT, "in [0, 1)"),
               "b2": (0.999, _IN_UNIT, "in [0, 1)"), "eps": (1e-8, lambda value: value > 0, "> 0")}


def peak_learning_rate(optimizer_config: Mapping, batch_size: int | None = None) -> float:
    """``learning_rate``, times ``batch_size / reference_batch_size`` when that key is > 0."""
    reference = optimizer_config.get("reference_batch_size", 0) or 0
    if reference < 0 or (reference and batch_size is None):
        raise ValueError(f"optimizer.reference_batch_size must be >= 0 (and needs the batch size), got {reference}")
    return float(optimizer_config["learning_rate"]) * (batch_size / reference if reference else 1.0)


def step_schedule(optimizer_config: Mapping, peak: float, total_steps: int, warmup: int) -> optax.Schedule:
    """Piecewise-constant: ``peak`` times ``decay_factor`` at each fraction of ``total_steps`` in ``decay_at``.

    The CIFAR recipe (×0.2 at epochs 60/120/160 of 200) is ``decay_at=(0.3, 0.6, 0.8)``; fractions make the
    same config meaningful for short runs (``num_train_steps``)."""
    del warmup  # the boundaries count from step 0
    boundaries = {}
    for fraction in optimizer_config.get("decay_at", ()):
        step = int(round(fraction * total_steps))
        if 0 < step < total_steps:
            boundaries[step] = boundaries.get(step, 1.0) * optimizer_config.get("decay_factor", 0.2)
    return optax.piecewise_constant_schedule(peak, boundaries)


def _after_warmup(make: Callable[[float, int, float], optax.Schedule]) -> Callable:
    """A decay from the peak over the steps after warmup (``make(peak, decay_steps, end_fraction)``)."""
    def schedule(optimizer_config: Mapping, peak: float, total_steps: int, warmup: int) -> optax.Schedule:
        end_fraction = float(optimizer_config.get("end_fraction", 0.0))
        if not 0 <= end_fraction <= 1:
            raise ValueError(f"optimizer.end_fraction must be in [0, 1], got {end_fraction}")
        decay = make(peak, max(1, total_steps - warmup), end_fraction)
        return lambda step: decay(jnp.maximum(jnp.asarray(step) - warmup, 0))
    return schedule


SCHEDULES = {
    "step": step_schedule,
    "cosine": _after_warmup(lambda peak, steps, end: optax.cosine_decay_schedule(peak, steps, alpha=end)),
    "linear": _after_warmup(lambda peak, steps, end: optax.linear_schedule(peak, peak * end, steps)),
    "constant": lambda optimizer_config, peak, total_steps, warmup: optax.constant_schedule(peak),
}


def learning_rate_schedule(optimizer_config: Mapping, total_steps: int,
                           batch_size: int | None = None) -> optax.Schedule:
    """``optimizer.schedule`` (default ``step``) at the peak rate (:func:`peak_learning_rate`), after a linear
    warmup of ``warmup_steps`` (0 = none)."""
    name = optimizer_config.get("schedule", "step")
    if name not in SCHEDULES:
        raise ValueError(f"unknown optimizer.schedule {name!r}; valid: {', '.join(SCHEDULES)}")
    warmup = int(optimizer_config.get("warmup_steps", 0) or 0)
    if warmup < 0:
        raise ValueError(f"optimizer.warmup_steps must be >= 0, got {warmup}")
    schedule = SCHEDULES[name](optimizer_config, peak_learning_rate(optimizer_config, batch_size), total_steps,
                               warmup)
    if not warmup:
        return schedule
    return lambda step: schedule(step) * jnp.minimum(1.0, (jnp.asarray(step, jnp.float32) + 1.0) / warmup)


def decay_mask(params: Any) -> Any:
    """True for the parameters weight decay applies to when biases and norm scales are excluded: ndim > 1."""
    return jax.tree.map(lambda param: jnp.ndim(param) > 1, params)


def _checked(optimizer_config: Mapping, name: str) -> dict:
    """The optimizer's numeric settings, checked: ``learning_rate``, ``weight_decay`` and its own keys."""
    learning_rate = optimizer_config["learning_rate"]
    if not isinstance(learning_rate, (int, float)) or not math.isfinite(learning_rate) or learning_rate < 0:
        raise ValueError(f"optimizer.learning_rate must be a finite non-negative number, got {learning_rate}")
    settings = {"weight_decay": optimizer_config.get("weight_decay", 0.0),
                "clip_norm": optimizer_config.get("clip_norm", 0.0) or 0.0}
    for key in ("weight_decay", "clip_norm"):
        if not math.isfinite(settings[key]) or settings[key] < 0:
            raise ValueError(f"optimizer.{key} must be finite and >= 0, got {settings[key]}")
    for key in OPTIMIZER_KEYS[name]:
        default, check, valid = _KEY_CHECKS[key]
        settings[key] = optimizer_config.get(key, default)
        if not check(settings[key]):
            raise ValueError(f"optimizer.{key} must be {valid}, got {settings[key]}")
    return settings


def _sgd(schedule, settings, mask, nesterov):
    """Weight decay added to the gradient before momentum, exactly like ``torch.optim.SGD(weight_decay=...)``."""
    weight_decay = settings["weight_decay"]
    return optax.chain(optax.add_decayed_weights(weight_decay, mask) if weight_decay else optax.identity(),
                       optax.sgd(schedule, momentum=settings["momentum"] or None, nesterov=nesterov))


OPTIMIZERS = {
    "sgd": _sgd,
    "adamw": lambda schedule, settings, mask, nesterov: optax.adamw(
        schedule, b1=settings["b1"], b2=settings["b2"], eps=settings["eps"], weight_decay=settings["weight_decay"],
        mask=mask),
    "lamb": lambda schedule, settings, mask, nesterov: optax.lamb(
        schedule, b1=settings["b1"], b2=settings["b2"], eps=settings["eps"], weight_decay=settings["weight_decay"],
        mask=mask),
    "lars": lambda schedule, settings, mask, nesterov: optax.lars(
        schedule, weight_decay=settings["weight_decay"], weight_decay_mask=mask or True,
        trust_ratio_mask=mask or True, momentum=settings["momentum"], nesterov=nesterov),
}


def make_optimizer(optimizer_config: Mapping, total_steps: int,
                   batch_size: int | None = None) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """``(transform, schedule)`` of ``config.optimizer`` (see the module docstring); ``ValueError`` in one line
    for a setting that cannot work."""
    name = optimizer_config.get("name", "sgd")
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer.name {name!r}; valid: {', '.join(OPTIMIZERS)}")
    settings = _checked(optimizer_config, name)
    schedule = learning_rate_schedule(optimizer_config, total_steps, batch_size)
    mask = None if optimizer_config.get("decay_norm_and_bias", True) else decay_mask
    transform = OPTIMIZERS[name](schedule, settings, mask, bool(optimizer_config.get("nesterov")))
    if settings["clip_norm"]:
        transform = optax.chain(optax.clip_by_global_norm(settings["clip_norm"]), transform)
    return transform, schedule

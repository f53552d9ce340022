"""The student's loss functions: cross-entropy, knowledge distillation, full-activation transfer.

- :func:`cross_entropy`: softmax cross-entropy with integer labels or class distributions, mean over the batch.
- :func:`soft_targets`: integer labels as class distributions, with label smoothing.
- :func:`distillation_kl` / :func:`kd_loss`: Hinton knowledge distillation as in the attention-transfer code.
- :func:`factt_loss` and :class:`FActTAdapters`: full-activation transfer (F-ActT, FitNets-style
  baseline of the paper's Table 1) with 1x1-conv adapters where channel counts differ.
- :func:`beta_factor`: the transfer-weight schedule (constant, linear or cosine decay over training).

Pure and jit-able; the registry (:mod:`at_jax.losses.terms`) turns them into weighted terms.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from at_jax.attention import match_spatial_size, normalize_rows

BETA_SCHEDULES = ("constant", "linear", "cosine")


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """``mean_n -log softmax(logits[n])[labels[n]]`` in float32 for integer labels (N,); for class
    distributions (N, K) (smoothed or mixed labels, :func:`soft_targets`) ``mean_n -sum_k labels[n, k] log
    softmax(logits[n])[k]``."""
    logits = jnp.asarray(logits).astype(jnp.float32)
    if jnp.ndim(labels) == jnp.ndim(logits):
        return jnp.mean(optax.losses.softmax_cross_entropy(logits, jnp.asarray(labels, jnp.float32)))
    return jnp.mean(optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels))


def soft_targets(labels: jax.Array, num_classes: int, smoothing: float = 0.0) -> jax.Array:
    """Integer labels (N,) as class distributions (N, K): ``(1 - smoothing) one_hot + smoothing / K``
    (Szegedy et al. 2016; ``optax.smooth_labels``)."""
    return optax.smooth_labels(jax.nn.one_hot(labels, num_classes, dtype=jnp.float32), smoothing)


def hard_labels(labels: jax.Array) -> jax.Array:
    """Integer labels of integer labels (N,) or of class distributions (N, K) (their most likely class)."""
    return jnp.argmax(labels, -1) if jnp.ndim(labels) == 2 else labels


def distillation_kl(
    student_logits: jax.Array, teacher_logits: jax.Array, *, temperature: float = 4.0
) -> jax.Array:
    """``T**2 * mean_n KL(softmax(t[n]/T) || softmax(s[n]/T))`` (KL summed over classes), float32.

    This is the KD term of the official code, ``kl_div(log_softmax(s/T), softmax(t/T),
    size_average=False) * T**2 / N``, without the ``alpha`` weight.
    """
    student = jnp.asarray(student_logits).astype(jnp.float32) / temperature
    teacher = jnp.asarray(teacher_logits).astype(jnp.float32) / temperature
    kl = optax.losses.kl_divergence_with_log_targets(
        jax.nn.log_softmax(student, axis=-1), jax.nn.log_softmax(teacher, axis=-1)
    )
    return temperature**2 * jnp.mean(kl)


def kd_loss(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    labels: jax.Array,
    *,
    temperature: float = 4.0,
    alpha: float = 0.9,
) -> jax.Array:
    """Knowledge distillation: ``alpha * T**2 * mean_n KL(softmax(t/T) || softmax(s/T))
    + (1 - alpha) * cross_entropy(s, labels)``.

    This is the DESIGN formula and the final official ``utils.distillation`` (KL summed over
    classes, divided by the batch size). An earlier revision of the official code used
    ``F.kl_div(...)`` with its default element-wise mean times ``2 * alpha * T**2``, i.e. the KL
    term scaled by an extra ``2 / num_classes``; that variant is not reproduced.
    """
    kl = distillation_kl(student_logits, teacher_logits, temperature=temperature)
    return alpha * kl + (1.0 - alpha) * cross_entropy(student_logits, labels)


def factt_loss(
    student_feature: jax.Array, teacher_feature: jax.Array, *, resize: str = "pool"
) -> jax.Array:
    """Full-activation transfer: ``mean_{n,i} (a_s[n, i] - a_t[n, i])**2`` with
    ``a = vec(A) / max(||vec(A)||_2, 1e-12)`` per example (the code form of :func:`at_loss`
    applied to whole activations instead of attention maps), float32.

    Spatial sizes are matched as in :func:`at_loss` (the larger is pooled down); channel counts
    must be equal (use :class:`FActTAdapters` on the student first).
    """
    if student_feature.shape[-1] != teacher_feature.shape[-1]:
        raise ValueError(
            "factt_loss needs equal channel counts (apply FActTAdapters to the student): "
            f"{student_feature.shape[-1]} vs {teacher_feature.shape[-1]}"
        )
    s, t = match_spatial_size(jnp.asarray(student_feature).astype(jnp.float32),
                              jnp.asarray(teacher_feature).astype(jnp.float32), resize=resize)
    flat_s = normalize_rows(s.reshape(s.shape[0], -1), "l2")
    flat_t = normalize_rows(t.reshape(t.shape[0], -1), "l2")
    return jnp.mean(jnp.square(flat_s - flat_t))


class FActTAdapters(nn.Module):
    """1x1 convolutions (no bias) mapping student features to the teacher's channel counts.

    Called on a tuple of student features (one per transfer pair); feature ``k`` passes through
    a conv named ``adapter_k`` to ``teacher_channels[k]`` channels when its own channel count
    differs, and unchanged otherwise.
    """

    teacher_channels: tuple[int, ...]

    @nn.compact
    def __call__(self, features: Sequence[jax.Array]) -> tuple[jax.Array, ...]:
        if len(features) != len(self.teacher_channels):
            raise ValueError(
                f"got {len(features)} student features for "
                f"{len(self.teacher_channels)} teacher channel counts"
            )
        adapted = []
        for index, (feature, channels) in enumerate(zip(features, self.teacher_channels)):
            if feature.shape[-1] != channels:
                feature = nn.Conv(
                    channels, (1, 1), use_bias=False, name=f"adapter_{index}"
                )(feature)
            adapted.append(feature)
        return tuple(adapted)


def beta_factor(schedule: str, progress: jax.Array | float, start: float = 0.0) -> jax.Array:
    """Multiplier in [0, 1] of the transfer weights at training ``progress`` in [0, 1] (clipped):
    "constant" -> 1, "linear" -> 1 - progress, "cosine" -> (1 + cos(pi * progress)) / 2; 0 before ``start``
    (the fraction of training after which the transfer terms are switched on)."""
    if schedule not in BETA_SCHEDULES:
        raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES!r}, got {schedule!r}")
    progress = jnp.clip(jnp.asarray(progress, jnp.float32), 0.0, 1.0)
    switched_on = (progress >= start).astype(jnp.float32)
    if schedule == "constant":
        return switched_on * jnp.ones_like(progress)
    if schedule == "linear":
        return switched_on * (1.0 - progress)
    return switched_on * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))

"""Task and transfer losses, and the student objective assembled from a loss config.

- :func:`cross_entropy`: softmax cross-entropy with integer labels, mean over the batch.
- :func:`kd_loss`: Hinton knowledge distillation as in the attention-transfer code.
- :func:`factt_loss` and :class:`FActTAdapters`: full-activation transfer (F-ActT, FitNets-style
  baseline of the paper's Table 1) with 1x1-conv adapters where channel counts differ.
- :func:`build_objective` -> :class:`Objective`: ``task + beta_factor * (at_beta * sum AT +
  factt_beta * sum F-ActT)`` over student/teacher feature pairs.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from at_jax.attention import LOSS_FORMS, NORMALIZATIONS, REDUCTIONS, RESIZE_METHODS
from at_jax.attention import _canonical_normalize, at_loss, match_spatial_size, normalize_rows

BETA_SCHEDULES = ("constant", "linear", "cosine")


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """``mean_n -log softmax(logits[n])[labels[n]]`` in float32 (integer labels, shape (N,))."""
    logits = jnp.asarray(logits).astype(jnp.float32)
    return jnp.mean(optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels))


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


def beta_factor(schedule: str, progress: jax.Array | float) -> jax.Array:
    """Multiplier in [0, 1] of the transfer weights at training ``progress`` in [0, 1] (clipped):
    "constant" -> 1, "linear" -> 1 - progress, "cosine" -> (1 + cos(pi * progress)) / 2."""
    if schedule not in BETA_SCHEDULES:
        raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES!r}, got {schedule!r}")
    progress = jnp.clip(jnp.asarray(progress, jnp.float32), 0.0, 1.0)
    if schedule == "constant":
        return jnp.ones_like(progress)
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + jnp.cos(jnp.pi * progress))


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclasses.dataclass(frozen=True)
class Objective:
    """The student's training loss; hashable, so it can be a static argument of ``jax.jit``.

    ``total = task + beta_factor(progress) * (at_beta * sum_pairs at_loss
    + factt_beta * sum_pairs factt_loss)``, where ``task`` is :func:`kd_loss` when
    ``kd_alpha > 0`` and :func:`cross_entropy` otherwise. Pairs ``(student_index,
    teacher_index)`` index the models' feature tuples; ``at_pairs=()`` pairs the last
    ``min(n_s, n_t)`` features of each model in order. Build it with :func:`build_objective`.
    """

    at_beta: float = 0.0
    at_p: float = 2.0
    at_reduce: str = "mean"
    at_normalize: str | None = "l2"
    at_form: str = "code"
    at_resize: str = "pool"
    at_pairs: tuple[tuple[int, int], ...] = ()
    kd_alpha: float = 0.0
    kd_temperature: float = 4.0
    factt_beta: float = 0.0
    beta_schedule: str = "constant"

    def __post_init__(self):
        _require(self.at_beta >= 0 and math.isfinite(self.at_beta),
                 f"at_beta must be a finite number >= 0, got {self.at_beta!r}")
        _require(self.factt_beta >= 0 and math.isfinite(self.factt_beta),
                 f"factt_beta must be a finite number >= 0, got {self.factt_beta!r}")
        _require(self.at_p > 0 and math.isfinite(self.at_p),
                 f"at_p must be a finite number > 0, got {self.at_p!r}")
        _require(0.0 <= self.kd_alpha <= 1.0, f"kd_alpha must be in [0, 1], got {self.kd_alpha!r}")
        _require(self.kd_temperature > 0 and math.isfinite(self.kd_temperature),
                 f"kd_temperature must be a finite number > 0, got {self.kd_temperature!r}")
        for name, valid in (("at_reduce", REDUCTIONS), ("at_normalize", NORMALIZATIONS),
                            ("at_form", LOSS_FORMS), ("at_resize", RESIZE_METHODS),
                            ("beta_schedule", BETA_SCHEDULES)):
            value = getattr(self, name)
            _require(value in valid, f"{name} must be one of {valid!r}, got {value!r}")
        for pair in self.at_pairs:
            _require(len(pair) == 2 and all(isinstance(i, int) and i >= 0 for i in pair),
                     f"at_pairs must hold (student_index, teacher_index) pairs of ints >= 0, "
                     f"got {pair!r}")

    @property
    def uses_at(self) -> bool:
        return self.at_beta > 0

    @property
    def uses_kd(self) -> bool:
        return self.kd_alpha > 0

    @property
    def uses_factt(self) -> bool:
        return self.factt_beta > 0

    @property
    def uses_teacher(self) -> bool:
        """Whether any term needs the teacher's logits or features."""
        return self.uses_at or self.uses_kd or self.uses_factt

    @property
    def needs_adapters(self) -> bool:
        """Whether F-ActT is on (its 1x1 adapters may then carry trainable parameters)."""
        return self.uses_factt

    def pairs(self, num_student: int, num_teacher: int) -> tuple[tuple[int, int], ...]:
        """The (student_index, teacher_index) pairs for feature tuples of the given lengths."""
        if not self.at_pairs:
            count = min(num_student, num_teacher)
            return tuple((num_student - count + k, num_teacher - count + k) for k in range(count))
        for student_index, teacher_index in self.at_pairs:
            _require(student_index < num_student and teacher_index < num_teacher,
                     f"at_pairs entry {(student_index, teacher_index)} is out of range for "
                     f"{num_student} student and {num_teacher} teacher features")
        return self.at_pairs

    def _paired(self, student_features, teacher_features):
        pairs = self.pairs(len(student_features), len(teacher_features))
        return ([student_features[i] for i, _ in pairs], [teacher_features[j] for _, j in pairs])

    def init_adapters(self, rng: jax.Array, student_features: Sequence[jax.Array],
                      teacher_features: Sequence[jax.Array]) -> Any:
        """Parameters of the F-ActT adapters for these feature shapes; ``{}`` when none needed."""
        if not self.needs_adapters:
            return {}
        paired_student, paired_teacher = self._paired(student_features, teacher_features)
        adapters = FActTAdapters(tuple(int(t.shape[-1]) for t in paired_teacher))
        variables = jax.jit(adapters.init)(rng, tuple(paired_student))
        return dict(variables.get("params", {}))

    def __call__(
        self,
        adapter_params: Any,
        student_logits: jax.Array,
        student_features: Sequence[jax.Array],
        teacher_logits: jax.Array | None,
        teacher_features: Sequence[jax.Array] | None,
        labels: jax.Array,
        progress: jax.Array | float,
        weights: Mapping[str, jax.Array] | None = None,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Returns ``(total, terms)``; ``terms`` holds float32 scalars: "ce" (plain student CE),
        "task", "kd" (T**2-scaled KL, when KD is on), "at" (unweighted sum over pairs) and
        "at/k" per pair (when AT is on), "factt" (when on) and "total". No gradient flows into
        the teacher's logits or features.

        ``weights`` optionally replaces the values of ``at_beta``, ``kd_alpha``, ``kd_temperature`` or
        ``factt_beta`` by runtime scalars (e.g. one per vmapped run of a sweep); which terms exist is still
        decided by this objective's own (static) values."""
        weights = weights or {}
        weight = lambda name: weights[name] if name in weights else getattr(self, name)
        _require(not (self.uses_kd and teacher_logits is None),
                 "KD is on (kd_alpha > 0) but teacher_logits is None")
        _require(not ((self.uses_at or self.uses_factt) and teacher_features is None),
                 "AT or F-ActT is on but teacher_features is None")
        terms: dict[str, jax.Array] = {}
        terms["ce"] = cross_entropy(student_logits, labels)
        if self.uses_kd:
            teacher_logits = jax.lax.stop_gradient(teacher_logits)
            terms["kd"] = distillation_kl(student_logits, teacher_logits,
                                          temperature=weight("kd_temperature"))
            kd_alpha = weight("kd_alpha")
            terms["task"] = kd_alpha * terms["kd"] + (1.0 - kd_alpha) * terms["ce"]
        else:
            terms["task"] = terms["ce"]
        total = terms["task"]
        if self.uses_at or self.uses_factt:
            factor = beta_factor(self.beta_schedule, progress)
            teacher_features = jax.lax.stop_gradient(tuple(teacher_features))
            paired_student, paired_teacher = self._paired(student_features, teacher_features)
        if self.uses_at:
            at_terms = [
                at_loss(s, t, p=self.at_p, reduce=self.at_reduce, normalize=self.at_normalize,
                        resize=self.at_resize, form=self.at_form)
                for s, t in zip(paired_student, paired_teacher)
            ]
            for index, value in enumerate(at_terms):
                terms[f"at/{index}"] = value
            terms["at"] = sum(at_terms, jnp.zeros((), jnp.float32))
            total = total + factor * weight("at_beta") * terms["at"]
        if self.uses_factt:
            adapters = FActTAdapters(tuple(int(t.shape[-1]) for t in paired_teacher))
            adapted = adapters.apply({"params": adapter_params or {}}, tuple(paired_student))
            terms["factt"] = sum(
                (factt_loss(s, t) for s, t in zip(adapted, paired_teacher)),
                jnp.zeros((), jnp.float32),
            )
            total = total + factor * weight("factt_beta") * terms["factt"]
        terms["total"] = total
        return total, {name: jnp.asarray(value, jnp.float32) for name, value in terms.items()}


def _as_index(value: Any) -> int:
    """An integer feature index (ints and integral numpy/jax scalars; not bools or floats)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"not an integer index: {value!r}")
    return int(value)


_FIELDS = {field.name: field for field in dataclasses.fields(Objective)}


def build_objective(
    loss_config: Mapping[str, Any] | None = None, *, ignore: Collection[str] = ()
) -> Objective:
    """Builds the :class:`Objective` from a ConfigDict or Mapping with any of the fields
    at_beta (0 = off; the paper used 1e3), at_p, at_reduce, at_normalize ("l2" | "l1" | None,
    "none" accepted), at_form ("code" | "paper"), at_resize ("pool" | "interpolate"),
    at_pairs, kd_alpha (0 = plain cross-entropy), kd_temperature, factt_beta and
    beta_schedule ("constant" | "linear" | "cosine", scales at_beta and factt_beta).
    Missing fields take the dataclass defaults; unknown fields or invalid values raise a
    one-line ValueError. Fields named in ``ignore`` (ones consumed elsewhere, e.g. a
    gradient-AT weight) are skipped.
    """
    values = dict(loss_config.items()) if loss_config is not None else {}
    values = {name: value for name, value in values.items() if name not in set(ignore)}
    unknown = sorted(set(values) - set(_FIELDS))
    _require(not unknown, f"unknown loss config field(s) {unknown}; valid: {sorted(_FIELDS)}")
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        try:
            if name in ("at_beta", "at_p", "kd_alpha", "kd_temperature", "factt_beta"):
                _require(not isinstance(value, (bool, str)), "not a number")
                value = float(value)
            elif name == "at_pairs":
                value = tuple(tuple(_as_index(i) for i in pair) for pair in (value or ()))
            elif name == "at_normalize":
                value = _canonical_normalize(value)
        except (TypeError, ValueError):
            raise ValueError(f"loss config field {name} has an invalid value {value!r}") from None
        kwargs[name] = value
    return Objective(**kwargs)

"""The student objective, assembled in one place from the registered terms and a loss config.

    task  = CE + sum over replaces_ce terms of  w * (value - CE)        (KD: w * KL + (1 - w) * CE)
    total = task + sum over the other terms of  w * s * value

where ``w`` is the term's weight (``loss.<weight_key>``; terms with w = 0 are not computed) and ``s`` the
β schedule factor for ``scheduled`` terms (AT, F-ActT) and 1 otherwise. Terms that differentiate the input
(gradient AT, min-l2, flip symmetry) run first and hand the student's forward pass to the others.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from at_jax.attention import LOSS_FORMS, NORMALIZATIONS, REDUCTIONS, RESIZE_METHODS, _canonical_normalize
from at_jax.errors import ConfigError
from at_jax.losses.functions import BETA_SCHEDULES, beta_factor, cross_entropy
from at_jax.losses.terms import (LossTerm, ModelOutputs, TermInputs, active_terms, feature_pairs,
                                 pair_features, registered_terms)


def _number(name: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, (bool, str)) or not isinstance(value, numbers.Real):
        raise ConfigError(f"loss config field {name} has an invalid value {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ConfigError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return value


def _choice(valid: tuple) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if value not in valid:
            raise ConfigError(f"{name} must be one of {valid!r}, got {value!r}")
        return value
    return check


def _index(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ConfigError(f"at_pairs must hold (student_index, teacher_index) pairs of ints >= 0, got {value!r}")
    return int(value)


def _pairs(name: str, value: Any) -> tuple[tuple[int, int], ...]:
    pairs = []
    for pair in value or ():
        if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
            raise ConfigError(f"at_pairs must hold (student_index, teacher_index) pairs of ints >= 0, got {pair!r}")
        pairs.append(tuple(_index(name, index) for index in pair))
    return tuple(pairs)


def _layers(name: str, value: Any) -> tuple[tuple[str, str], ...]:
    """``loss.at_layers``: ("student/path", "teacher/path") pairs of flax module paths."""
    layers = []
    for pair in value or ():
        if (isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2
                or not all(isinstance(path, str) and path.strip("/") for path in pair)):
            raise ConfigError(f"{name} must hold (\"student/path\", \"teacher/path\") pairs of module paths, "
                              f"got {pair!r}")
        layers.append(tuple(path.strip("/") for path in pair))
    return tuple(layers)


def _fraction(name: str, value: Any) -> float:
    value = _number(name, value)
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"loss.{name} must be a fraction in [0, 1), got {value}")
    return value


#: Loss options (not weights): name -> (default, check(name, value) -> canonical value).
OPTIONS: dict[str, tuple[Any, Callable[[str, Any], Any]]] = {
    "at_p": (2.0, lambda name, value: _number(name, value, positive=True)),
    "at_reduce": ("mean", _choice(REDUCTIONS)),
    "at_normalize": ("l2", lambda name, value: _choice(NORMALIZATIONS)(name, _canonical_normalize(value))),
    "at_form": ("code", _choice(LOSS_FORMS)),
    "at_resize": ("pool", _choice(RESIZE_METHODS)),
    "at_pairs": ((), _pairs),
    "at_layers": ((), _layers),
    "kd_temperature": (4.0, lambda name, value: _number(name, value, positive=True)),
    "label_smoothing": (0.0, lambda name, value: _fraction(name, value)),
    "beta_schedule": ("constant", _choice(BETA_SCHEDULES)),
    "beta_start": (0.0, lambda name, value: _fraction(name, value)),
}
#: Options a multi-run job may vary per run (they enter the step as traced scalars, like the weights).
RUNTIME_OPTIONS = ("kd_temperature",)


def sweepable_keys() -> tuple[str, ...]:
    """Loss config keys a multi-run job can sweep: every term's weight and the runtime options."""
    return tuple(term.weight_key for term in registered_terms()) + RUNTIME_OPTIONS


def _weight(term: LossTerm, value: Any) -> float:
    value = _number(term.weight_key, value)
    if value > term.max_weight:
        raise ConfigError(f"{term.weight_key} must be in [0, {term.max_weight:g}], got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Objective:
    """The student's training loss; hashable, so that it can be a static argument of ``jax.jit``.

    ``terms``: the active terms with their (static) weights; ``options``: every loss option. Build it with
    :func:`build_objective`. A call can replace weights (and runtime options) by traced scalars, one per
    run of a sweep; which terms exist is decided by the objective alone.
    """
    terms: tuple[tuple[LossTerm, float], ...] = ()
    options: tuple[tuple[str, Any], ...] = tuple((name, default) for name, (default, _) in OPTIONS.items())

    def option(self, name: str) -> Any:
        return dict(self.options)[name]

    def weight(self, weight_key: str) -> float:
        """The static weight of a term (0 when it is off)."""
        return next((weight for term, weight in self.terms if term.weight_key == weight_key), 0.0)

    @property
    def term_names(self) -> tuple[str, ...]:
        return tuple(term.name for term, _ in self.terms)

    @property
    def uses_teacher(self) -> bool:
        return any(term.needs_teacher for term, _ in self.terms)

    @property
    def needs_adapters(self) -> bool:
        return any(term.init_params is not None for term, _ in self.terms)

    @property
    def pairs_features(self) -> bool:
        """Whether an active term compares student and teacher features (AT, F-ActT)."""
        return any(term.pairs_features for term, _ in self.terms)

    @property
    def uses_input_gradients(self) -> bool:
        return any(term.input_gradient for term, _ in self.terms)

    def pairs(self, num_student: int, num_teacher: int) -> tuple[tuple[int, int], ...]:
        """The (student_index, teacher_index) feature pairs for feature tuples of these lengths."""
        return feature_pairs(self.option("at_pairs"), num_student, num_teacher)

    def init_adapters(self, rng: jax.Array, student_features: Sequence, teacher_features: Sequence) -> Any:
        """Trainable parameters of the terms that have some (F-ActT's adapters); ``{}`` when none."""
        for term, _ in self.terms:
            if term.init_params is not None:
                return term.init_params(rng, *pair_features(self.option("at_pairs"), student_features,
                                                            teacher_features))
        return {}

    def _option_reader(self, weights: Mapping[str, Any]) -> Callable[[str], Any]:
        options = dict(self.options)
        return lambda name: weights[name] if name in weights else options[name]

    def input_gradient_terms(self, student_loss: Callable, model_params: Any, x: jax.Array, labels: jax.Array,
                             teacher_loss: Callable | None = None, teacher_variables: Any = None,
                             weights: Mapping[str, Any] | None = None) -> tuple[dict, Any]:
        """``({name: value}, forward)`` of the input-gradient terms; forward is the student's
        ``(logits, features, aux)`` from ``student_loss(params, x, labels) -> (ce, forward)`` (None if no
        such term is on)."""
        inputs = TermInputs(None, None, labels, self._option_reader(weights or {}), student_loss=student_loss,
                            model_params=model_params, inputs=x, teacher_loss=teacher_loss,
                            teacher_variables=teacher_variables)
        values, forward = {}, None
        for term, _ in self.terms:
            if term.input_gradient:
                values[term.name], aux = term.compute(inputs)
                forward = aux if forward is None else forward
        return values, forward

    def __call__(self, adapter_params: Any, student_logits: jax.Array, student_features: Sequence[jax.Array],
                 teacher_logits: jax.Array | None, teacher_features: Sequence[jax.Array] | None,
                 labels: jax.Array, progress: jax.Array | float, weights: Mapping[str, Any] | None = None, *,
                 computed: Mapping[str, jax.Array] | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
        """``(total, terms)``: "ce", "task", each active term's value (and its extra values, e.g. "at/k"
        per AT pair) and "total", float32 scalars. ``computed`` holds the input-gradient terms' values
        (:meth:`input_gradient_terms`). No gradient flows into the teacher's logits or features."""
        weights = dict(weights or {})
        teacher = None
        if teacher_logits is not None or teacher_features is not None:
            teacher = ModelOutputs(jax.lax.stop_gradient(teacher_logits),
                                   jax.lax.stop_gradient(tuple(teacher_features or ())))
        if self.uses_teacher and (teacher is None or teacher.logits is None or teacher_features is None):
            raise ValueError(f"terms {', '.join(self.term_names)} need the teacher's logits and features")
        inputs = TermInputs(ModelOutputs(student_logits, tuple(student_features)), teacher, labels,
                            self._option_reader(weights), adapter_params=adapter_params)
        values = {"ce": cross_entropy(student_logits, labels)}
        for term, _ in self.terms:
            if term.input_gradient:
                values[term.name] = (computed or {})[term.name]
                continue
            value = term.compute(inputs)
            value, extra = value if isinstance(value, tuple) else (value, {})
            values[term.name] = value
            values.update({f"{term.name}/{suffix}": item for suffix, item in extra.items()})
        return self._combine(values, progress, weights)

    def _combine(self, values: dict, progress: Any, weights: Mapping[str, Any]) -> tuple[jax.Array, dict]:
        """The one place the terms are summed (see the module docstring)."""
        ce = values["ce"]
        factor = beta_factor(self.option("beta_schedule"), progress, self.option("beta_start"))
        task, transfer = ce, jnp.zeros((), jnp.float32)
        for term, static_weight in self.terms:
            weight = weights.get(term.weight_key, static_weight)
            if term.replaces_ce:
                task = task + weight * (values[term.name] - ce)
            else:
                transfer = transfer + weight * (factor if term.scheduled else 1.0) * values[term.name]
        values.update(task=task, total=task + transfer)
        return values["total"], {name: jnp.asarray(value, jnp.float32) for name, value in values.items()}

    def student_loss(self, params: Mapping, *, student_loss: Callable, x: jax.Array, labels: jax.Array,
                     teacher: ModelOutputs | None, teacher_loss: Callable | None, teacher_variables: Any,
                     progress: Any, weights: Mapping[str, Any] | None = None):
        """``(total, terms, forward)`` for student ``params = {"model": ..., "adapters": ...}``, the whole
        objective with its input-gradient terms: what a train step differentiates."""
        computed, forward = self.input_gradient_terms(student_loss, params["model"], x, labels, teacher_loss,
                                                      teacher_variables, weights)
        if forward is None:
            forward = student_loss(params["model"], x, labels)[1]
        logits, features = forward[0], forward[1]
        total, terms = self(params.get("adapters", {}), logits, features,
                            None if teacher is None else teacher.logits,
                            None if teacher is None else teacher.features, labels, progress, weights,
                            computed=computed)
        return total, terms, forward


def build_objective(loss_config: Mapping[str, Any] | None = None) -> Objective:
    """The :class:`Objective` of a loss config (ConfigDict or Mapping): term weights (``at_beta``,
    ``kd_alpha``, ``factt_beta``, ``grad_at_beta``, ``grad_penalty_beta``, ``flip_symmetry_beta`` and the
    ``<name>_beta`` of user terms; 0 = off) and the options of :data:`OPTIONS`. Missing keys take their
    defaults; unknown keys or invalid values raise a one-line :class:`ConfigError`."""
    values = dict(loss_config.items()) if loss_config is not None else {}
    registered = {term.weight_key: term for term in registered_terms()}
    unknown = sorted(set(values) - set(registered) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"unknown loss config field(s) {unknown}; valid: {sorted(set(registered) | set(OPTIONS))}")
    weights = {key: _weight(term, values.get(key, 0.0)) for key, term in registered.items()}
    terms = tuple((term, weights[term.weight_key]) for term in active_terms(weights))
    options = dict((name, check(name, values[name]) if name in values else default)
                   for name, (default, check) in OPTIONS.items())
    if options["at_layers"]:  # the models' features are then these layers, in order: pair them one to one
        if options["at_pairs"]:
            raise ConfigError("set loss.at_layers (module paths) or loss.at_pairs (feature indices), not both")
        options["at_pairs"] = tuple((index, index) for index in range(len(options["at_layers"])))
    return Objective(terms=terms, options=tuple(options.items()))

"""The loss-term registry: every term of the student's objective, declared once.

A :class:`LossTerm` says what a term is called (logged as ``train/<name>``), which config key weighs it
(``loss.<weight_key>``, 0 = off), whether it needs the teacher, what it computes, and how it enters the
total. Everything else is derived from this table: the objective (:mod:`at_jax.losses.objective`), which
terms a config turns on, the keys a multi-run job can sweep, whether a run needs a teacher, the method
names of runs and experiments, and the table labels.

The paper's terms are declared at the bottom of this file; a user adds one with :func:`register_term`
(from a config file, say)::

    def center_loss(student, teacher, labels):        # student.logits, student.features
        return jnp.mean(jnp.square(student.features[-1]))

    at_jax.losses.register_term("center", center_loss)   # weight: config.loss.center_beta
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from at_jax import gradient
from at_jax.attention import at_loss
from at_jax.errors import ConfigError
from at_jax.losses.functions import FActTAdapters, distillation_kl, factt_loss

#: Names the trainer logs itself; a term cannot take them.
RESERVED_NAMES = ("ce", "task", "total", "accuracy", "learning_rate", "grad_norm", "param_norm", "none",
                  "teacher")


@dataclasses.dataclass(frozen=True)
class ModelOutputs:
    """What a model returns: ``logits`` (N, classes) and ``features`` (the group outputs used for AT)."""
    logits: jax.Array
    features: tuple[jax.Array, ...]


@dataclasses.dataclass(frozen=True)
class TermInputs:
    """Everything a term may read. ``student`` is None while input-gradient terms run (they produce the
    student's forward pass); ``teacher`` is None when no term needs it."""
    student: ModelOutputs | None
    teacher: ModelOutputs | None
    labels: jax.Array
    option: Callable[[str], Any]          # option(name): a loss option, a swept value first
    adapter_params: Any = None            # F-ActT adapters
    # for input-gradient terms: the student's CE (params, x, labels) -> (ce, forward) and the teacher's
    student_loss: Callable | None = None
    model_params: Any = None
    inputs: jax.Array | None = None
    teacher_loss: Callable | None = None
    teacher_variables: Any = None


@dataclasses.dataclass(frozen=True)
class LossTerm:
    """One term of the objective; see the module docstring.

    ``compute(TermInputs)`` returns the term's value (a float32 scalar), or ``(value, {suffix: scalar})``
    for extra logged values (``train/<name>/<suffix>``); an input-gradient term returns ``(value,
    forward)`` where forward is the student's ``(logits, features, batch_stats)``.
    The total adds ``weight * value``, times the β schedule for ``scheduled`` terms; a ``replaces_ce``
    term mixes with the cross-entropy instead (KD: ``task = weight * value + (1 - weight) * CE``).
    """
    name: str
    weight_key: str
    compute: Callable[[TermInputs], Any]
    needs_teacher: bool = False
    input_gradient: bool = False
    scheduled: bool = False
    replaces_ce: bool = False
    pairs_features: bool = False   # compares student and teacher features paired by at_pairs / at_layers
    max_weight: float = math.inf
    method: str = ""          # short name in run and method names (default: name)
    label: str = ""           # name in result tables (default: name)
    init_params: Callable | None = None   # (rng, student features, teacher features) -> params (adapters)
    builtin: bool = False

    @property
    def method_name(self) -> str:
        return self.method or self.name

    @property
    def table_label(self) -> str:
        return self.label or self.name


_REGISTRY: dict[str, LossTerm] = {}


def _add(term: LossTerm) -> LossTerm:
    _REGISTRY[term.name] = term
    return term


def registered_terms() -> tuple[LossTerm, ...]:
    """Every term, the paper's first (in a fixed order), then user terms in registration order."""
    return tuple(_REGISTRY.values())


def term_for_weight(weight_key: str) -> LossTerm | None:
    return next((term for term in _REGISTRY.values() if term.weight_key == weight_key), None)


def register_term(name: str, fn: Callable[[ModelOutputs, ModelOutputs | None, jax.Array], jax.Array], *,
                  needs_teacher: bool = False) -> LossTerm:
    """Adds a user term ``fn(student, teacher, labels) -> scalar`` to the objective.

    ``student`` and ``teacher`` have ``.logits`` and ``.features`` (``teacher`` is None unless
    ``needs_teacher``; the teacher gets no gradient). Its weight is the config key ``loss.<name>_beta``
    (0 = off), the run logs it as ``train/<name>``, adds ``beta * fn(...)`` to the total, and a job can
    sweep ``<name>_beta``. Registering a name again replaces that user term; the paper's terms and the
    names the trainer logs itself cannot be taken.
    """
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ConfigError(f"a loss term name must be lower-case letters, digits and _, got {name!r}")
    existing = _REGISTRY.get(name)
    if name in RESERVED_NAMES or (existing is not None and existing.builtin):
        raise ConfigError(f"loss term name {name!r} is taken by at_jax; choose another")
    if not callable(fn):
        raise ConfigError(f"loss term {name!r}: fn must be callable, got {fn!r}")
    weight_key = f"{name}_beta"
    clash = term_for_weight(weight_key)
    if clash is not None and clash.name != name:
        raise ConfigError(f"loss term {name!r}: its weight key {weight_key} is taken by term {clash.name!r}")

    def compute(inputs: TermInputs) -> jax.Array:
        value = jnp.asarray(fn(inputs.student, inputs.teacher if needs_teacher else None, inputs.labels))
        if value.shape != ():
            raise ConfigError(f"loss term {name!r} must return a scalar, got shape {value.shape}")
        return value.astype(jnp.float32)

    return _add(LossTerm(name=name, weight_key=weight_key, compute=compute, needs_teacher=bool(needs_teacher)))


# --- the paper's terms -----------------------------------------------------------------------------------

def paired(inputs: TermInputs) -> tuple[list, list]:
    """The (student, teacher) feature pairs of the ``at_pairs`` option (both F-ActT and AT use them)."""
    return pair_features(inputs.option("at_pairs"), inputs.student.features, inputs.teacher.features)


def feature_pairs(at_pairs: Sequence, num_student: int, num_teacher: int) -> tuple[tuple[int, int], ...]:
    """(student_index, teacher_index) pairs: ``at_pairs``, or () = the last min(n_s, n_t) features in order."""
    if not at_pairs:
        count = min(num_student, num_teacher)
        return tuple((num_student - count + k, num_teacher - count + k) for k in range(count))
    for student_index, teacher_index in at_pairs:
        if student_index >= num_student or teacher_index >= num_teacher:
            raise ConfigError(f"at_pairs entry {(student_index, teacher_index)} is out of range for "
                              f"{num_student} student and {num_teacher} teacher features")
    return tuple(at_pairs)


def pair_features(at_pairs: Sequence, student_features: Sequence, teacher_features: Sequence):
    pairs = feature_pairs(at_pairs, len(student_features), len(teacher_features))
    return [student_features[i] for i, _ in pairs], [teacher_features[j] for _, j in pairs]


def _attention_transfer(inputs: TermInputs):
    options = {key: inputs.option(f"at_{key}") for key in ("p", "reduce", "normalize", "resize", "form")}
    values = [at_loss(s, t, **options) for s, t in zip(*paired(inputs))]
    return sum(values, jnp.zeros((), jnp.float32)), {str(index): value for index, value in enumerate(values)}


def _distillation(inputs: TermInputs):
    return distillation_kl(inputs.student.logits, inputs.teacher.logits,
                           temperature=inputs.option("kd_temperature"))


def _teacher_channels(teacher_features: Sequence) -> tuple[int, ...]:
    return tuple(int(feature.shape[-1]) for feature in teacher_features)


def _full_activation_transfer(inputs: TermInputs):
    student_features, teacher_features = paired(inputs)
    adapted = FActTAdapters(_teacher_channels(teacher_features)).apply(
        {"params": inputs.adapter_params or {}}, tuple(student_features))
    return sum((factt_loss(s, t) for s, t in zip(adapted, teacher_features)), jnp.zeros((), jnp.float32))


def _init_adapters(rng: jax.Array, student_features: Sequence, teacher_features: Sequence) -> dict:
    adapters = FActTAdapters(_teacher_channels(teacher_features))
    return dict(jax.jit(adapters.init)(rng, tuple(student_features)).get("params", {}))


def _gradient_transfer(inputs: TermInputs):
    return gradient.gradient_at_loss(inputs.student_loss, inputs.model_params, inputs.teacher_loss,
                                     inputs.teacher_variables, inputs.inputs, inputs.labels, has_aux=True,
                                     teacher_has_aux=False)


def _input_gradient_term(function: Callable) -> Callable[[TermInputs], Any]:
    return lambda inputs: function(inputs.student_loss, inputs.model_params, inputs.inputs, inputs.labels,
                                   has_aux=True)


_BUILTIN = (
    LossTerm("at", "at_beta", _attention_transfer, needs_teacher=True, scheduled=True, pairs_features=True,
             label="AT"),
    LossTerm("kd", "kd_alpha", _distillation, needs_teacher=True, replaces_ce=True, max_weight=1.0,
             label="KD"),
    LossTerm("factt", "factt_beta", _full_activation_transfer, needs_teacher=True, scheduled=True,
             pairs_features=True, label="F-ActT", init_params=_init_adapters),
    LossTerm("grad_at", "grad_at_beta", _gradient_transfer, needs_teacher=True, input_gradient=True,
             label="grad AT"),
    LossTerm("grad_penalty", "grad_penalty_beta", _input_gradient_term(gradient.input_gradient_penalty),
             input_gradient=True, method="min_l2", label="min-l2"),
    LossTerm("flip_symmetry", "flip_symmetry_beta", _input_gradient_term(gradient.flip_symmetry_loss),
             input_gradient=True, method="symmetry", label="symmetry norm"),
)
for _term in _BUILTIN:
    _add(dataclasses.replace(_term, builtin=True))


# --- what is derived from the registry -------------------------------------------------------------------

def weight_keys() -> tuple[str, ...]:
    """The loss config keys that weigh a term (0 = off): at_beta, kd_alpha, ..., and user ``<name>_beta``."""
    return tuple(term.weight_key for term in _REGISTRY.values())


def active_terms(loss_config: Mapping[str, Any]) -> tuple[LossTerm, ...]:
    """The terms a loss config turns on (weight > 0), in registry order."""
    return tuple(term for term in _REGISTRY.values() if _positive(loss_config.get(term.weight_key, 0.0)))


def _positive(value: Any) -> bool:
    try:
        return float(value) > 0
    except (TypeError, ValueError):
        return False


def needs_teacher(loss_config: Mapping[str, Any]) -> bool:
    """Whether a run with this loss config needs a teacher."""
    return any(term.needs_teacher for term in active_terms(loss_config))


def method_name(loss_config: Mapping[str, Any]) -> str:
    """A short name for the terms a loss config turns on, e.g. "at", "at+kd", "none"."""
    return "+".join(term.method_name for term in active_terms(loss_config)) or "none"


def method_label(method: str) -> str:
    """A method name as result tables print it: "at+kd" -> "AT+KD", "none" -> "student"."""
    if method == "none":
        return "student"
    labels = {term.method_name: term.table_label for term in _REGISTRY.values()}
    return "+".join(labels.get(part, part) for part in method.split("+"))

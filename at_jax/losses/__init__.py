"""Losses: the functions (CE, KD, F-ActT), the registry of objective terms, and the objective.

- :mod:`at_jax.losses.functions`: pure loss functions.
- :mod:`at_jax.losses.terms`: every term declared once (:func:`register_term` adds a user term).
- :mod:`at_jax.losses.objective`: :func:`build_objective` -> :class:`Objective`, the one place they are summed.
"""
from at_jax.losses.functions import (BETA_SCHEDULES, FActTAdapters, beta_factor, cross_entropy, distillation_kl,
                                     factt_loss, hard_labels, kd_loss, soft_targets)
from at_jax.losses.objective import OPTIONS, RUNTIME_OPTIONS, Objective, build_objective, sweepable_keys
from at_jax.losses.terms import (LossTerm, ModelOutputs, active_terms, method_label, method_name, needs_teacher,
                                 register_term, registered_terms, weight_keys)

__all__ = [
    "BETA_SCHEDULES", "FActTAdapters", "LossTerm", "ModelOutputs", "OPTIONS", "Objective", "RUNTIME_OPTIONS",
    "active_terms", "beta_factor", "build_objective", "cross_entropy", "distillation_kl", "factt_loss",
    "hard_labels", "kd_loss", "method_label", "method_name", "needs_teacher", "register_term", "registered_terms",
    "soft_targets", "sweepable_keys", "weight_keys",
]

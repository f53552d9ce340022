"""Teacher, then students: the embedded default's one-command comparison.

``teacher_then_students(config, workdir)`` trains ``config.teacher.model`` without transfer terms in
``workdir/teacher``, then ``config.model`` without transfer terms in ``workdir/student`` and with the
config's transfer terms in ``workdir/student_<method>`` using that teacher. Each run resumes on its own.
"""
from __future__ import annotations

import os

import ml_collections

from at_jax.trainer import train_and_evaluate

TRANSFER_KEYS = ("at_beta", "kd_alpha", "factt_beta", "grad_at_beta", "grad_penalty_beta",
                 "flip_symmetry_beta")


def method_name(loss_config: ml_collections.ConfigDict) -> str:
    """A short name for the transfer terms a loss config turns on, e.g. "at", "at+kd", "none"."""
    parts = [name for key, name in (("at_beta", "at"), ("kd_alpha", "kd"), ("factt_beta", "factt"),
                                    ("grad_at_beta", "grad_at"), ("grad_penalty_beta", "min_l2"),
                                    ("flip_symmetry_beta", "symmetry"))
             if loss_config.get(key, 0.0)]
    return "+".join(parts) or "none"


def without_transfer(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    plain = ml_collections.ConfigDict(config.to_dict())
    for key in TRANSFER_KEYS:
        if key in plain.loss:
            plain.loss[key] = 0.0
    plain.pipeline = ""
    plain.teacher.workdir = ""
    return plain


def teacher_then_students(config: ml_collections.ConfigDict, workdir: str) -> dict[str, dict]:
    """Runs teacher, plain student and transfer student; returns their summaries by run name."""
    summaries = {}
    teacher_config = without_transfer(config)
    teacher_config.model = config.teacher.model
    teacher_dir = os.path.join(workdir, "teacher")
    summaries["teacher"] = train_and_evaluate(teacher_config, teacher_dir)
    summaries["student"] = train_and_evaluate(without_transfer(config), os.path.join(workdir, "student"))
    method = method_name(config.loss)
    if method != "none":
        transfer_config = ml_collections.ConfigDict(config.to_dict())
        transfer_config.pipeline = ""
        transfer_config.teacher.workdir = teacher_dir
        name = f"student_{method.replace('+', '_')}"
        summaries[name] = train_and_evaluate(transfer_config, os.path.join(workdir, name))
    return summaries


def format_summaries(summaries: dict[str, dict]) -> str:
    """A small plain-text table of test accuracies."""
    lines = [f"{'run':<22} {'model':<12} {'test accuracy':>13} {'train time':>10}"]
    for name, summary in summaries.items():
        accuracy = summary.get("accuracy")
        accuracy_text = "n/a" if accuracy is None else f"{100 * accuracy:.2f}%"
        lines.append(f"{name:<22} {summary.get('model', ''):<12} {accuracy_text:>13} "
                     f"{summary.get('train_seconds', 0):>9.0f}s")
    return "\n".join(lines)

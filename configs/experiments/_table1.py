"""Shared by the Table 1 experiment configs: CIFAR-10, the official recipe, methods none/AT/F-ActT/KD/AT+KD.

Not an experiment config itself (no ``get_config``); see table1_*.py beside it.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cifar import cifar_config  # noqa: E402  (configs/cifar.py)

from at_jax.experiments.plan import make_experiment_config  # noqa: E402

# The loss terms each Table 1 column turns on (configs/cifar.py's values): AT beta 1e3 (p=2, mean over
# channels, l2-normalised, all groups), KD T=4 alpha=0.9 (the paper states T = 4 for the ResNet rows only; for the
# NIN row, table1_nin.py, T = 4 is ours), F-ActT beta 1e3 decayed linearly; AT+KD decays the
# AT weight too (the paper: "in case of combining AT with KD we decay it during training"; the linear form is
# ours, the paper does not give one). beta_schedule scales the AT and F-ActT weights, never KD's.
TABLE1_METHODS = {
    "none": {},
    "at": {"at_beta": 1e3},
    "factt": {"factt_beta": 1e3, "beta_schedule": "linear"},
    "kd": {"kd_alpha": 0.9, "kd_temperature": 4.0},
    "at+kd": {"at_beta": 1e3, "kd_alpha": 0.9, "kd_temperature": 4.0, "beta_schedule": "linear"},
}


def paper_setting(student: str, teacher: str, dataset: str = "cifar10") -> dict:
    """The base-config values under which the paper's numbers were measured."""
    return {"model": student, "teacher": {"model": teacher}, "dataset": {"name": dataset},
            "num_epochs": 200, "num_train_steps": -1, "batch_size": 128}


def table1_config(name: str, student: str, teacher: str, reference: dict, description: str):
    """One row of Table 1: teacher ``teacher`` once, student ``student`` with each method over 5 seeds."""
    base = cifar_config("cifar10", f"student={student},teacher={teacher},method=none")
    return make_experiment_config(base, name=name, methods=TABLE1_METHODS, seeds=5,
                                  paper_reference=reference, paper_setting=paper_setting(student, teacher),
                                  description=description)

"""The paper's Table 3 setting: gradient-based attention on CIFAR-10 with Network-in-Network, no batch norm.

``--config=configs/cifar10_nin_gradient.py:method=grad_at`` (method: baseline | min_l2 | grad_at | kd |
symmetry | at). Student NIN-thin without BN and without ReLU before the global pooling; teacher NIN-wide
without BN (train it with method=baseline and ``:model=nin-wide-nobn``); flip-only augmentation (no crop),
no weight decay. The paper does not print its β values for these rows; the defaults below are ours (the input
gradient of a batch-mean loss shrinks like 1/batch, so β is large) — sweep them (``--config.loss.*``).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cifar import cifar_config, parse_arguments  # noqa: E402

METHODS = {
    "baseline": {},
    "min_l2": {"grad_penalty_beta": 1e3},
    "grad_at": {"grad_at_beta": 1e3},
    "kd": {"kd_alpha": 0.9},
    "symmetry": {"flip_symmetry_beta": 1e3},
    "at": {"at_beta": 1e3},
}


def get_config(argument: str | None = None):
    values = parse_arguments(argument, {"model": "nin-thin-nobn", "teacher": "nin-wide-nobn",
                                        "method": "baseline"}, methods=tuple(METHODS))
    config = cifar_config("cifar10", f"student={values['model']},teacher={values['teacher']}")
    config.augment.pad = 0                 # flip-only augmentation
    config.optimizer.weight_decay = 0.0
    config.loss.at_beta = 0.0
    config.loss.kd_alpha = 0.0
    for key, value in METHODS[values["method"]].items():
        config.loss[key] = value
    if values["model"] == "nin-thin-nobn":
        config.model_kwargs = {"relu_before_pool": False}
    return config

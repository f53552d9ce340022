"""Cluttered MNIST, the embedded default's task: ``--config=configs/cluttered_mnist.py[:split=val|test]``.

The default config (``at_jax/default_config.py``: WRN-10-2 teacher for 12 epochs, then WRN-10-1 students without
and with AT, beta = 300, 6 epochs) evaluated on the validation digits (``split=val``, the default here: for
choosing settings) or the test digits (``split=test``: what ``python -m at_jax.train`` reports). The README's
"The embedded task" section has the protocol, the validation sweep and the 5-seed test results.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cifar import parse_arguments  # noqa: E402

from at_jax.default_config import get_config as get_base_config  # noqa: E402

SPLITS = ("val", "test")


def get_config(argument: str | None = None):
    values = parse_arguments(argument, {"split": "val"})
    if values["split"] not in SPLITS:
        raise ValueError(f"unknown split {values['split']!r}; valid: {', '.join(SPLITS)}")
    config = get_base_config()
    config.dataset.eval_split = values["split"]
    return config

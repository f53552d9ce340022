"""Table 1, row 3: WRN-40-1 (0.6M) teaches WRN-16-1 (0.2M) on CIFAR-10; none / AT / F-ActT / KD / AT+KD.

``python -m at_jax.experiment --config=configs/experiments/table1_wrn_40_1_to_16_1.py --workdir=DIR``
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _table1 import table1_config  # noqa: E402

# Error %, median of 5 runs: the AT paper (arXiv 1612.03928), Table 1. All but "none" were transcribed from a
# damaged copy of the paper: check them against the paper before relying on them.
PAPER = {"none": 8.77, "at": 8.25, "factt": 8.62, "kd": 8.39, "at+kd": 8.01, "teacher": 6.58}


def get_config():
    return table1_config("Table 1: WRN-40-1 -> WRN-16-1, CIFAR-10", "wrn-16-1", "wrn-40-1", PAPER,
                         __doc__.split("\n", 1)[0])

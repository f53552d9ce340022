"""Table 1, row 4: WRN-40-2 (2.2M) teaches WRN-16-2 (0.7M) on CIFAR-10; none / AT / F-ActT / KD / AT+KD.

``python -m at_jax.experiment --config=configs/experiments/table1_wrn_40_2_to_16_2.py --workdir=DIR``
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _table1 import table1_config  # noqa: E402

# Error %, median of 5 runs: the AT paper (arXiv 1612.03928), Table 1. All but "none" were transcribed from a
# damaged copy of the paper: check them against the paper before relying on them.
PAPER = {"none": 6.31, "at": 5.85, "factt": 6.24, "kd": 6.08, "at+kd": 5.71, "teacher": 5.23}


def get_config():
    return table1_config("Table 1: WRN-40-2 -> WRN-16-2, CIFAR-10", "wrn-16-2", "wrn-40-2", PAPER,
                         __doc__.split("\n", 1)[0])

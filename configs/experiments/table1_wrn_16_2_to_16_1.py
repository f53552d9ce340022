"""Table 1, row 2: WRN-16-2 (0.7M) teaches WRN-16-1 (0.2M) on CIFAR-10; none / AT / F-ActT / KD / AT+KD.

``python -m at_jax.experiment --config=configs/experiments/table1_wrn_16_2_to_16_1.py --workdir=DIR``
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _table1 import table1_config  # noqa: E402

# Error %, median of 5 runs: the AT paper (arXiv 1612.03928), Table 1. The F-ActT, KD and AT+KD values were
# transcribed from a damaged copy of the paper: check them against the paper before relying on them.
PAPER = {"none": 8.77, "at": 7.93, "factt": 8.51, "kd": 7.41, "at+kd": 7.51, "teacher": 6.31}


def get_config():
    return table1_config("Table 1: WRN-16-2 -> WRN-16-1, CIFAR-10", "wrn-16-1", "wrn-16-2", PAPER,
                         __doc__.split("\n", 1)[0])

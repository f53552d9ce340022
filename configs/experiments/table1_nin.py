"""Table 1, row 1: NIN-wide (1M) teaches NIN-thin (0.2M) on CIFAR-10 (with batch norm; the official CIFAR
recipe); none / AT / F-ActT / KD / AT+KD (AT+KD with the AT weight decayed, see _table1.py).

The NIN is the AT authors' own (szagoruyko/wide-residual-networks models/nin.lua: BN, no dropout, a linear
classifier after global pooling): nin-wide is that file's network (1,005,642 parameters), nin-thin the same
structure with widths chosen here for the paper's 0.2M (200,138); see at_jax/models/nin.py. AT (and F-ActT)
pair the outputs of the three mlpconv blocks (before each pool: 32x32, 16x16, 8x8), not the class scores.

KD: the paper states T = 4 for its ResNet transfers, not for NIN; T = 4 here (with alpha 0.9, as the WRN rows) is
ours, the value of the official cifar.py ``--temperature`` default (see configs/cifar.py).

``python -m at_jax.experiment --config=configs/experiments/table1_nin.py --workdir=DIR``
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _table1 import table1_config  # noqa: E402

# Error %, median of 5 runs: the AT paper (arXiv 1612.03928), Table 1, NIN row. Every value was transcribed from a
# damaged copy of the paper: check them against the paper before relying on them.
PAPER = {"none": 9.38, "at": 8.93, "factt": 9.05, "kd": 8.55, "at+kd": 8.33, "teacher": 7.28}


def get_config():
    return table1_config("Table 1: NIN-wide -> NIN-thin, CIFAR-10", "nin-thin", "nin-wide", PAPER,
                         "Table 1, row 1: NIN-wide (1M) teaches NIN-thin (0.2M) on CIFAR-10.")

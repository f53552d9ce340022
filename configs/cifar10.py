"""CIFAR-10, official recipe. ``--config=configs/cifar10.py:student=wrn-16-1,teacher=wrn-16-2,method=at``

method: none | at | kd | at+kd | factt. A run with method=none trains a model (e.g. the teacher:
``--config=configs/cifar10.py:student=wrn-16-2``); a transfer run needs ``--config.teacher.workdir``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cifar import cifar_config  # noqa: E402


def get_config(argument: str | None = None):
    return cifar_config("cifar10", argument)

"""Attention transfer across architectures on the embedded task (cluttered MNIST):
``--config=configs/cross_architecture.py[:direction=cnn_to_vit|vit_to_cnn,split=val|test]``.

- ``cnn_to_vit``: a WRN-10-2 teacher (12 epochs, as the embedded default) teaches a 4-block ViT-Ti with 4x4
  patches (``vit-ti/4``, ``depth=4``: a 10x10 patch grid on the 40x40 canvas plus a class token). AT pairs the
  WRN's three group outputs with the ViT's last three default features (blocks 2, 3, 4 of 4), their token maps
  laid back on the 10x10 grid; the teacher's 40x40 and 20x20 maps are average-pooled to it.
- ``vit_to_cnn``: that ViT as the teacher of the WRN-10-1 student, the same pairs the other way.

Everything else is the embedded default (SGD, lr 0.1, batch 64, students 6 epochs, AT beta 300): the ViT gets
no recipe of its own here, so read its accuracy as that of a ViT trained with a CNN's recipe on 3,000 digits.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cifar import parse_arguments  # noqa: E402

from at_jax.default_config import get_config as get_base_config  # noqa: E402

VIT, VIT_OPTIONS = "vit-ti/4", {"depth": 4}
CNN_TEACHER, CNN_STUDENT = "wrn-10-2", "wrn-10-1"
DIRECTIONS = ("cnn_to_vit", "vit_to_cnn")


def get_config(argument: str | None = None):
    values = parse_arguments(argument, {"direction": "cnn_to_vit", "split": "val"})
    if values["direction"] not in DIRECTIONS:
        raise ValueError(f"unknown direction {values['direction']!r}; valid: {', '.join(DIRECTIONS)}")
    config = get_base_config()
    config.dataset.eval_split = values["split"]
    if values["direction"] == "cnn_to_vit":
        config.teacher.model = CNN_TEACHER
        config.model, config.model_kwargs = VIT, dict(VIT_OPTIONS)
    else:
        config.teacher.model, config.teacher.model_kwargs = VIT, dict(VIT_OPTIONS)
        config.model = CNN_STUDENT
    return config

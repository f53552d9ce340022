"""Attention transfer across architectures on the embedded task (cluttered MNIST):
``--config=configs/cross_architecture.py[:direction=cnn_to_vit|vit_to_cnn,split=val|test]``.

- ``cnn_to_vit``: a WRN-10-2 teacher (12 epochs, as the embedded default) teaches a 4-block ViT-Ti with 4x4
  patches (``vit-ti/4``, ``depth=4``: a 10x10 patch grid on the 40x40 canvas plus a class token). AT pairs the
  WRN's three group outputs with the ViT's last three default features (blocks 2, 3, 4 of 4), their token maps
  laid back on the 10x10 grid; the teacher's 40x40 and 20x20 maps are average-pooled to it.
- ``vit_to_cnn``: that ViT as the teacher of the WRN-10-1 student, the same pairs the other way.

The ViT trains with a transformer's recipe (``VIT_RECIPE``: AdamW, lr 1e-3, weight decay 0.05 off biases and
norm scales, 47 warm-up steps, cosine decay), as student (``optimizer``) or as a teacher trained in the pipeline
(``teacher.optimizer``); the WRNs keep the embedded default's (SGD, lr 0.1, step decay). Everything else is
the embedded default (batch 64, students 6 epochs, AT beta 300).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cifar import parse_arguments  # noqa: E402

import ml_collections  # noqa: E402

from at_jax.default_config import get_config as get_base_config  # noqa: E402

VIT, VIT_OPTIONS = "vit-ti/4", {"depth": 4}
CNN_TEACHER, CNN_STUDENT = "wrn-10-2", "wrn-10-1"
DIRECTIONS = ("cnn_to_vit", "vit_to_cnn")
VIT_RECIPE = {"name": "adamw", "learning_rate": 1e-3, "weight_decay": 0.05, "decay_norm_and_bias": False,
              "warmup_steps": 47, "schedule": "cosine"}


def get_config(argument: str | None = None):
    values = parse_arguments(argument, {"direction": "cnn_to_vit", "split": "val"})
    if values["direction"] not in DIRECTIONS:
        raise ValueError(f"unknown direction {values['direction']!r}; valid: {', '.join(DIRECTIONS)}")
    config = get_base_config()
    config.dataset.eval_split = values["split"]
    cnn_recipe = {key: config.optimizer[key] for key in VIT_RECIPE}
    if values["direction"] == "cnn_to_vit":
        config.teacher.model = CNN_TEACHER
        config.model, config.model_kwargs = VIT, dict(VIT_OPTIONS)
        config.optimizer.update(VIT_RECIPE)
        config.teacher.optimizer = ml_collections.ConfigDict(cnn_recipe)
    else:
        config.teacher.model, config.teacher.model_kwargs = VIT, dict(VIT_OPTIONS)
        config.teacher.optimizer = ml_collections.ConfigDict(VIT_RECIPE)
        config.model = CNN_STUDENT
    return config

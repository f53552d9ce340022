"""Attention transfer between a CNN and a ViT on the embedded task (cluttered MNIST), in both directions:
``--config=configs/experiments/cnn_and_vit.py:direction=cnn_to_vit|vit_to_cnn,split=val|test``.

- ``cnn_to_vit``: the embedded default's WRN-10-2 teacher (12 epochs, SGD) teaches a small ViT
  (``VIT_STUDENT``: 4 blocks of width 64, 2 heads, 8x8 patches: a 5x5 patch grid on the 40x40 canvas, plus a
  class token) trained with the transformer recipe of configs/cross_architecture.py (AdamW, cosine) for
  ``VIT_STUDENT_EPOCHS``.
- ``vit_to_cnn``: the same ViT with 5x5 patches (``VIT_TEACHER``: an 8x8 grid), trained in the experiment for
  ``VIT_TEACHER_EPOCHS`` with its recipe, teaches the WRN-10-1 student (the embedded default's recipe,
  6 epochs).

The student ViT has the coarser patches for the budget: it trains 20 times in a command, the teacher once
(5x5 patches: 65 s for 10 epochs alone on 2 quiet cores, 8x8: 42 s, the same accuracy). AT pairs the WRN's
three group outputs with the ViT's last three block outputs (blocks 2, 3, 4), the token maps laid on their
patch grid and the WRN's 40x40, 20x20 and 10x10 maps average-pooled to it. The epochs are set by the budget
(each command within 30 minutes on 2 CPU cores), not tuned; the AT weight is chosen on the validation digits
(``split=val``, configs/experiments/_embedded_protocol.py), ``CHOSEN_BETA`` holds the choice.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _embedded_protocol import experiment  # noqa: E402
from cifar import parse_arguments  # noqa: E402  (configs/cifar.py)
from cross_architecture import VIT_RECIPE  # noqa: E402  (configs/cross_architecture.py)

import ml_collections  # noqa: E402

from at_jax.default_config import get_config as get_base_config  # noqa: E402

VIT_STUDENT, VIT_TEACHER = "vit-ti/8", "vit-ti/5"
SMALL_VIT_OPTIONS = {"depth": 4, "embed_dim": 64, "num_heads": 2}
VIT_STUDENT_EPOCHS, VIT_TEACHER_EPOCHS = 10, 30
DIRECTIONS = ("cnn_to_vit", "vit_to_cnn")
#: The AT weight each direction's validation sweep chose (lowest median validation error of 3 seeds;
#: ``split=val``). vit_to_cnn, median validation error (%) of the student alone 24.2, with AT at beta
#: 30 / 100 / 300 / 1000: 25.6 / 30.0 / 33.9 / 60.5 (no weight beats the student alone; the lowest is taken).
#: cnn_to_vit (the 8x8-patch student): alone 78.9, beta 30 / 100 / 300 / 1000: 79.4 / 71.9 / 75.2 / 80.7.
CHOSEN_BETA = {"cnn_to_vit": 100.0, "vit_to_cnn": 30.0}
DESCRIPTIONS = {
    "cnn_to_vit": "Cluttered MNIST, a WRN-10-2 teacher and a small ViT student (4 blocks of width 64, 8x8 patches, "
                  "AdamW + cosine, {epochs} epochs) alone, +AT (token maps), +KD, +AT+KD; paired seeds.",
    "vit_to_cnn": "Cluttered MNIST, a small ViT teacher (4 blocks of width 64, 5x5 patches, AdamW + cosine, "
                  "{epochs} epochs) and WRN-10-1 students alone, +AT, +KD, +AT+KD; paired seeds.",
}


def base_config(direction: str) -> ml_collections.ConfigDict:
    """The student's run config of ``direction`` (its teacher trained in the experiment from it)."""
    config = get_base_config()
    cnn_recipe = {key: config.optimizer[key] for key in VIT_RECIPE}
    if direction == "cnn_to_vit":
        config.model, config.model_kwargs = VIT_STUDENT, dict(SMALL_VIT_OPTIONS)
        config.num_epochs = VIT_STUDENT_EPOCHS
        config.optimizer.update(VIT_RECIPE)
        config.teacher.optimizer = ml_collections.ConfigDict(cnn_recipe)
    else:
        config.teacher.model, config.teacher.model_kwargs = VIT_TEACHER, dict(SMALL_VIT_OPTIONS)
        config.teacher.num_epochs = VIT_TEACHER_EPOCHS
        config.teacher.optimizer = ml_collections.ConfigDict(VIT_RECIPE)
    config.metrics.attention_figure = False
    return config


def get_config(argument: str | None = None):
    values = parse_arguments(argument, {"direction": "cnn_to_vit", "split": "test"})
    direction = values["direction"]
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; valid: {', '.join(DIRECTIONS)}")
    epochs = VIT_STUDENT_EPOCHS if direction == "cnn_to_vit" else VIT_TEACHER_EPOCHS
    student = "small ViT" if direction == "cnn_to_vit" else "WRN-10-1"
    teacher = "WRN-10-2" if direction == "cnn_to_vit" else "small ViT"
    return experiment(base_config(direction), values["split"], CHOSEN_BETA[direction],
                      name=f"cluttered MNIST: {teacher} -> {student}",
                      description=DESCRIPTIONS[direction].format(epochs=epochs))

"""ResNet with Channel Reassessment Attention on ImageNet: ``--config=configs/cra_imagenet.py:ARGS``.

NOTE: the dataset is named "imagenet", for which at_jax has no loader yet; until one is added a run
stops with ``at_jax: error: unknown dataset 'imagenet'``. The model names and the recipe are valid.

ARGS (all optional), e.g. ``model=resnet50-cra`` or
``model=resnet18-cra,teacher=resnet34-cra,method=at`` (with ``--config.teacher.workdir``):

  model    resnet{18,34,50,101,152}-cra (CRA grid k = 7, after each block's last BN) or any name
  teacher  a model name for transfer runs      (default resnet34-cra)
  method   none | at | kd | at+kd              (AT beta 1e3 on all four groups; KD T=4, alpha 0.9)

The CRA grid is ``config.model_kwargs.cra_grid`` (7; set for -cra models).

Recipe (standard ImageNet ResNet training, as in the AT paper's ImageNet runs): batch 256, SGD
momentum 0.9, lr 0.1 x0.1 at epochs 30/60/90 of 100, weight decay 1e-4, RandomResizedCrop 224 +
flip; eval resize 256, centre crop 224; bf16 compute with float32 parameters. Reported top-1/top-5 error: ResNet-50 24.20/7.15 ->
ResNet-50-CRA 22.77/6.47 (26.31M parameters).
"""
import os
import sys

import ml_collections

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cifar import parse_arguments  # noqa: E402

from at_jax.default_config import get_config as get_base_config  # noqa: E402

IMAGENET_TRAIN_IMAGES = 1_281_167


def get_config(argument: str | None = None):
    values = parse_arguments(argument, {"model": "resnet50-cra", "teacher": "resnet34-cra", "method": "none"})
    if values["method"] == "factt":
        raise ValueError("method factt is a CIFAR baseline; use none, at, kd or at+kd")
    config = get_base_config()
    config.pipeline = ""
    config.model = values["model"]
    config.teacher.model = values["teacher"]
    if config.model.endswith("-cra"):
        config.model_kwargs.cra_grid = 7
    # a fresh dataset section: no generator options of the embedded default's dataset
    config.dataset = ml_collections.ConfigDict({"name": "imagenet", "data_dir": "~/tensorflow_datasets",
                                                "seed": 0})
    config.batch_size = 256
    steps_per_epoch = IMAGENET_TRAIN_IMAGES // config.batch_size
    config.num_epochs = 100
    config.log_every_steps = 100
    config.eval_every_steps = steps_per_epoch
    config.eval_batch_size = 1000
    config.checkpoint_every_steps = steps_per_epoch
    config.compute_dtype = "bfloat16"
    config.optimizer.learning_rate = 0.1
    config.optimizer.momentum = 0.9
    config.optimizer.nesterov = False
    config.optimizer.weight_decay = 1e-4
    config.optimizer.decay_at = (30 / 100, 60 / 100, 90 / 100)
    config.optimizer.decay_factor = 0.1
    methods = values["method"].split("+")
    config.loss.at_beta = 1e3 if "at" in methods else 0.0
    config.loss.kd_alpha = 0.9 if "kd" in methods else 0.0
    config.loss.kd_temperature = 4.0
    return config

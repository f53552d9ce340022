"""ResNet with Channel Reassessment Attention on ImageNet: ``--config=configs/cra_imagenet.py:ARGS``.

Data as ``configs/imagenet.py``: ``--config.dataset.data_dir`` an image folder or a TFDS data dir with
``imagenet2012``, streamed by grain.

ARGS (all optional), e.g. ``model=resnet50-cra`` or
``model=resnet18-cra,teacher=resnet34-cra,method=at`` (with ``--config.teacher.workdir``):

  model    resnet{18,34,50,101,152}-cra (CRA grid k = 7, after each block's last BN) or any name
  teacher  a model name for transfer runs      (default resnet34-cra)
  method   none | at | kd | at+kd              (AT beta 1e3 on all four groups; KD T=4, alpha 0.9)

The CRA grid is ``config.model_kwargs.cra_grid`` (7; set for -cra models).

Recipe: ``configs/imagenet.py``'s (fb.resnet.torch: batch 256, SGD 0.9 Nesterov, lr 0.1 x0.1 at epochs
30/60/90 of 100, weight decay 1e-4, RandomResizedCrop 224 + flip; eval resize 256, centre crop 224; bf16
compute). Reported top-1/top-5 error (Shen & Wen, arXiv 2010.05605): ResNet-50 24.20/7.15 -> ResNet-50-CRA
22.77/6.47 (26.31M parameters).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cifar import parse_arguments  # noqa: E402

from imagenet import imagenet_recipe, set_method  # noqa: E402

from at_jax.default_config import get_config as get_base_config  # noqa: E402


def get_config(argument: str | None = None):
    values = parse_arguments(argument, {"model": "resnet50-cra", "teacher": "resnet34-cra", "method": "none"})
    if values["method"] == "factt":
        raise ValueError("method factt is a CIFAR baseline; use none, at, kd or at+kd")
    config = imagenet_recipe(get_base_config())
    config.model = values["model"]
    config.teacher.model = values["teacher"]
    if config.model.endswith("-cra"):
        config.model_kwargs.cra_grid = 7
    return set_method(config, values["method"])

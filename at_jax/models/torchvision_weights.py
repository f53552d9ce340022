"""torchvision ResNet weights -> at_jax ResNet variables (the two share structure, padding and BN semantics).

A torchvision ``resnetD`` state dict names ``conv1.weight`` (O, I, H, W), ``bn1.{weight,bias,running_mean,
running_var,num_batches_tracked}``, ``layerL.B.{conv1,bn1,conv2,bn2[,conv3,bn3]}.*``,
``layerL.B.downsample.{0,1}.*`` and ``fc.{weight,bias}``; at_jax's :class:`~at_jax.models.resnet.ResNet` names
``conv1/kernel`` (H, W, I, O), ``bn1/{scale,bias}`` + batch stats ``bn1/{mean,var}``, ``layerL_B/...``,
``layerL_B/downsample_{conv,bn}`` and ``fc/{kernel (I, O), bias}``. timm's ``resnet18`` ... ``resnet152``
state dicts use the same names. The mapping is one to one (:mod:`at_jax.models.pytorch_weights`): every key
of the state dict must be used and every at_jax variable filled, with equal shapes, or it is refused.
Imported models expect inputs normalised as torchvision's: ``(x / 255 - IMAGENET_MEAN) / IMAGENET_STD``.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from at_jax.models.pytorch_weights import variables_from_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resnet_module_path(torch_module: str) -> str:
    """``layer2.0.downsample.1`` -> ``layer2_0/downsample_bn``; ``layer1.1.conv2`` -> ``layer1_1/conv2``."""
    path = re.sub(r"^layer(\d)\.(\d+)\.", r"layer\1_\2/", torch_module)
    return path.replace("downsample.0", "downsample_conv").replace("downsample.1", "downsample_bn")


def variables_from_torchvision(state_dict: Mapping[str, Any], template: Mapping) -> dict:
    """at_jax ``{"params", "batch_stats"}`` from a torchvision ResNet ``state_dict`` (arrays or tensors),
    checked against ``template`` (the at_jax model's variable shapes): missing or extra keys and shape
    mismatches raise :class:`~at_jax.errors.CheckpointError` naming the first few."""
    return variables_from_state_dict(state_dict, template, resnet_module_path)

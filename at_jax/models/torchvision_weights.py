"""torchvision ResNet weights -> at_jax ResNet variables (the two share structure, padding and BN semantics).

A torchvision ``resnetD`` state dict names ``conv1.weight`` (O, I, H, W), ``bn1.{weight,bias,running_mean,
running_var,num_batches_tracked}``, ``layerL.B.{conv1,bn1,conv2,bn2[,conv3,bn3]}.*``,
``layerL.B.downsample.{0,1}.*`` and ``fc.{weight,bias}``; at_jax's :class:`~at_jax.models.resnet.ResNet` names
``conv1/kernel`` (H, W, I, O), ``bn1/{scale,bias}`` + batch stats ``bn1/{mean,var}``, ``layerL_B/...``,
``layerL_B/downsample_{conv,bn}`` and ``fc/{kernel (I, O), bias}``. The mapping is one to one: every key of
the state dict must be used and every at_jax variable filled, with equal shapes, or it is refused.
Imported models expect inputs normalised as torchvision's: ``(x / 255 - IMAGENET_MEAN) / IMAGENET_STD``.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np
from flax import traverse_util

from at_jax.errors import CheckpointError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_BN_FIELDS = {"weight": ("params", "scale"), "bias": ("params", "bias"), "running_mean": ("batch_stats", "mean"),
              "running_var": ("batch_stats", "var")}


def _module_path(torch_module: str) -> str:
    """``layer2.0.downsample.1`` -> ``layer2_0/downsample_bn``; ``layer1.1.conv2`` -> ``layer1_1/conv2``."""
    path = re.sub(r"^layer(\d)\.(\d+)\.", r"layer\1_\2/", torch_module)
    return path.replace("downsample.0", "downsample_conv").replace("downsample.1", "downsample_bn")


def _target(key: str, value: np.ndarray) -> tuple[tuple[str, ...], np.ndarray] | None:
    """(at_jax variable path, converted array) of one state-dict entry; None for BN's batch counters."""
    module, _, field = key.rpartition(".")
    path = tuple(_module_path(module).split("/"))
    if field == "num_batches_tracked":
        return None
    if module == "fc":
        return ("params", "fc", "kernel" if field == "weight" else "bias"), (value.T if field == "weight" else value)
    if field == "weight" and value.ndim == 4:
        return ("params", *path, "kernel"), value.transpose(2, 3, 1, 0)
    if field in _BN_FIELDS:
        collection, name = _BN_FIELDS[field]
        return (collection, *path, name), value
    raise CheckpointError(f"unexpected key {key!r} in the state dict: not a torchvision ResNet")


def variables_from_torchvision(state_dict: Mapping[str, Any], template: Mapping) -> dict:
    """at_jax ``{"params", "batch_stats"}`` from a torchvision ResNet ``state_dict`` (arrays or tensors),
    checked against ``template`` (the at_jax model's variable shapes): missing or extra keys and shape
    mismatches raise :class:`CheckpointError` naming the first few."""
    expected = traverse_util.flatten_dict(dict(template))
    filled, extra, wrong = {}, [], []
    for key, value in state_dict.items():
        target = _target(key, np.asarray(value, dtype=np.float32))
        if target is None:
            continue
        path, array = target
        if path not in expected:
            extra.append(key)
        elif tuple(expected[path].shape) != array.shape:
            wrong.append(f"{key} {tuple(np.shape(value))}")
        else:
            filled[path] = array
    missing = ["/".join(path) for path in expected if path not in filled]
    for problems, what in ((extra, "keys this architecture does not have"), (wrong, "shapes of another architecture"),
                           (missing, "missing weights")):
        if problems:
            raise CheckpointError(f"the state dict does not fit: {what}: {', '.join(problems[:3])}"
                                  + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""))
    return traverse_util.unflatten_dict(filled)

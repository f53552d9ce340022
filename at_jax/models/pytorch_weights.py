"""A PyTorch ``state_dict`` -> flax variables, checked key by key and shape by shape.

Shared by the torchvision and timm mappings (:mod:`at_jax.models.torchvision_weights`,
:mod:`at_jax.models.timm_weights`): each names only how a PyTorch module path becomes a flax module path
(``layer1.0.conv1`` -> ``layer1_0/conv1``); the fields convert the same way everywhere:

    weight (O, I, kh, kw)   conv               -> params/.../kernel (kh, kw, I, O)
    weight (O, I, 1, 1)     1x1 conv as dense  -> params/.../kernel (I, O)    (when the flax kernel is 2-D)
    weight (O, I)           nn.Linear          -> params/.../kernel (I, O)
    weight (C,)             norm scale         -> params/.../scale
    bias                                       -> params/.../bias
    running_mean, running_var (BatchNorm)      -> batch_stats/.../mean, var
    num_batches_tracked                        -> (dropped)
    any other name (cls_token, gamma, ...)     -> params/.../name, as it is

The mapping is one to one: every key of the state dict must be used and every flax variable filled, with
equal shapes, or :class:`~at_jax.errors.CheckpointError` names the first few that do not fit.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
from flax import traverse_util

from at_jax.errors import CheckpointError

_FIELDS = {"bias": ("params", "bias"), "running_mean": ("batch_stats", "mean"),
           "running_var": ("batch_stats", "var")}


def _target(key: str, value: np.ndarray, module_path: Callable[[str], str]
            ) -> tuple[tuple[str, ...], np.ndarray] | None:
    """(flax variable path, array in flax's layout) of one state-dict entry; None for BN's batch counter."""
    module, _, field = key.rpartition(".")
    if field == "num_batches_tracked":
        return None
    path = tuple(module_path(module).split("/")) if module else ()
    if field == "weight":
        if value.ndim == 4:
            return ("params", *path, "kernel"), value.transpose(2, 3, 1, 0)
        if value.ndim == 2:
            return ("params", *path, "kernel"), value.T
        return ("params", *path, "scale"), value
    collection, name = _FIELDS.get(field, ("params", field))
    return (collection, *path, name), value


def _fits(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``array`` in ``shape``: as it is, or a 1x1 conv kernel (1, 1, I, O) as a dense kernel (I, O)."""
    if array.shape == shape:
        return array
    if array.ndim == 4 and array.shape[:2] == (1, 1) and len(shape) == 2 and array.shape[2:] == shape:
        return array[0, 0]
    return None


def as_float32(value: Any) -> np.ndarray:
    """A state-dict value (numpy array or torch tensor of any float type) as a float32 numpy array."""
    if hasattr(value, "detach"):  # a torch tensor (bfloat16 has no numpy type)
        value = value.detach().cpu().float().numpy()
    return np.asarray(value, dtype=np.float32)


def variables_from_state_dict(state_dict: Mapping[str, Any], template: Mapping,
                              module_path: Callable[[str], str]) -> dict:
    """Flax ``{"params", "batch_stats"}`` from ``state_dict`` (arrays or tensors), checked against ``template``
    (the flax model's variable shapes, e.g. from ``jax.eval_shape(model.init, ...)``); ``module_path`` maps a
    PyTorch module path to the flax one. Missing or extra keys and shape mismatches raise
    :class:`CheckpointError` naming the first few."""
    expected = traverse_util.flatten_dict(dict(template))
    filled, extra, wrong = {}, [], []
    for key, value in state_dict.items():
        target = _target(key, as_float32(value), module_path)
        if target is None:
            continue
        path, array = target
        if path not in expected:
            extra.append(key)
            continue
        fitted = _fits(array, tuple(expected[path].shape))
        if fitted is None:
            wrong.append(f"{key} {tuple(np.shape(value))}")
        else:
            filled[path] = fitted
    missing = ["/".join(path) for path in expected if path not in filled]
    for problems, what in ((extra, "keys this architecture does not have"), (wrong, "shapes of another architecture"),
                           (missing, "missing weights")):
        if problems:
            raise CheckpointError(f"the state dict does not fit: {what}: {', '.join(problems[:3])}"
                                  + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""))
    return traverse_util.unflatten_dict(filled)

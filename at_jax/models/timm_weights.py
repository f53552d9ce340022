"""timm weights -> at_jax variables: ViT / DeiT, ConvNeXt and ResNet state dicts, key by key.

The flax parameter paths and the timm keys they take are listed in the docstrings of
:mod:`at_jax.models.vit` and :mod:`at_jax.models.convnext`; timm's ResNets use torchvision's key names
(:mod:`at_jax.models.torchvision_weights`). Only the module paths differ per family; the fields convert as
in :mod:`at_jax.models.pytorch_weights` (conv OIHW -> HWIO, linear (out, in) -> (in, out), a 1x1-conv MLP
as used by ``convnext_atto`` -> a dense kernel, norm weight -> scale), and the fill is one to one: missing,
extra or mis-shaped keys are refused, named.

    ViT       blocks.{i}.attn.qkv        -> block_{i}/attn/qkv          patch_embed.proj -> patch_embed/proj
    ConvNeXt  stages.{i}.blocks.{j}.mlp.fc1 -> stages_{i}/blocks_{j}/mlp_fc1   stem.0 -> stem_0
              stages.{i}.downsample.1    -> stages_{i}/downsample_1     head.norm, head.fc -> head_norm, head_fc
    ResNet    layer{l}.{b}.downsample.0  -> layer{l}_{b}/downsample_conv  (torchvision's names)
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping

from at_jax.errors import CheckpointError
from at_jax.models.pytorch_weights import variables_from_state_dict
from at_jax.models.torchvision_weights import resnet_module_path


def vit_module_path(torch_module: str) -> str:
    """``blocks.3.mlp.fc1`` -> ``block_3/mlp/fc1``; ``patch_embed.proj`` -> ``patch_embed/proj``."""
    return re.sub(r"^blocks\.(\d+)(\.|$)", r"block_\1\2", torch_module).replace(".", "/")


def convnext_module_path(torch_module: str) -> str:
    """``stages.1.blocks.2.mlp.fc1`` -> ``stages_1/blocks_2/mlp_fc1``; ``head.fc`` -> ``head_fc``."""
    path = re.sub(r"\.(\d+)(?=\.|$)", r"_\1", torch_module)
    return re.sub(r"^head\.", "head_", path.replace("mlp.fc", "mlp_fc")).replace(".", "/")


#: at_jax model-name prefix -> the module-path mapping of its timm family.
FAMILIES: dict[str, Callable[[str], str]] = {"vit-": vit_module_path, "convnext-": convnext_module_path,
                                             "resnet": resnet_module_path}


def family_of(model: str) -> Callable[[str], str]:
    """The module-path mapping for the at_jax model ``model`` (``vit-ti/16``, ``convnext-atto``, ``resnet50``)."""
    for prefix, module_path in FAMILIES.items():
        if model.startswith(prefix):
            return module_path
    raise CheckpointError(f"no timm weight mapping for at_jax model {model!r}; known: "
                          f"{', '.join(prefix + '*' for prefix in FAMILIES)}")


def variables_from_timm(state_dict: Mapping[str, Any], template: Mapping, model: str) -> dict:
    """at_jax ``{"params"[, "batch_stats"]}`` for ``model`` from a timm ``state_dict`` (arrays or tensors),
    checked against ``template`` (the at_jax model's variable shapes): missing or extra keys and shape
    mismatches raise :class:`~at_jax.errors.CheckpointError` naming the first few."""
    return variables_from_state_dict(state_dict, template, family_of(model))

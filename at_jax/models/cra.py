"""Channel Reassessment Attention (Shen & Wen, arXiv 2010.05605) and the CRA variants of ResNet / WRN.

For a feature map y (N, H, W, C) and a grid size k, each channel is rescaled by a gate computed
from its own k x k summary, with no channel mixing::

    p = adaptive_avg_pool(y, (k, k))                       (N, k, k, C)
    s_c = sigmoid(sum_{i,j} w[i, j, c] * p[:, i, j, c] + b_c)   a depthwise k x k conv, VALID -> 1 x 1
    out = y * s                                            (broadcast over H, W)

Cost C * (k^2 + 1) parameters per insertion. Adaptive pooling follows PyTorch's
``adaptive_avg_pool2d``: output bin i averages rows [floor(i H / k), ceil((i + 1) H / k)), which
also works when H < k (bins then repeat rows). The module is inserted where Squeeze-and-Excitation
goes: on each block's residual branch before the addition (ResNet: after the branch's last BN; WRN:
after the second conv), via the blocks' ``channel_attention`` hook.

Registry names: ``resnet{18,34,50,101,152}-cra`` (k = 7 with the ImageNet stem, 4 with
``stem='cifar'``) and ``wrn-D-K-cra`` (k = 4); the keyword ``cra_grid`` overrides k. Init of the
depthwise conv as PyTorch's ``nn.Conv2d`` default: weight and bias U(-1/k, 1/k) (fan-in k^2).
ResNet-50-CRA with 1000 classes has 26,312,232 parameters (25,557,032 + 15,104 * 50).
"""
from __future__ import annotations

import functools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp

from at_jax.models.layers import (
    Dtype,
    check_module_kwargs,
    is_positive_int,
    torch_linear_bias,
    torch_linear_kernel,
)
from at_jax.models.registry import register
from at_jax.models.resnet import ResNet
from at_jax.models.wrn import WideResNet
from at_jax.spatial import adaptive_avg_pool

#: Default grid sizes: ImageNet ResNets (224 input, 7x7 last stage) and CIFAR-sized networks.
IMAGENET_GRID = 7
CIFAR_GRID = 4


class ChannelReassessment(nn.Module):
    """``y -> y * sigmoid(depthwise_conv_kxk(adaptive_avg_pool(y, k)))``, per channel (see module doc).

    Parameters: ``conv/kernel`` (k, k, 1, C), ``conv/bias`` (C,). Output dtype = ``dtype`` (or y's).
    """

    grid: int = IMAGENET_GRID
    dtype: Dtype | None = None

    def __post_init__(self) -> None:
        if not is_positive_int(self.grid):
            raise ValueError(f"CRA grid size must be an integer >= 1, got {self.grid!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, y: jax.Array) -> jax.Array:
        channels = y.shape[-1]
        pooled = adaptive_avg_pool(y.astype(jnp.float32), (self.grid, self.grid))
        logits = nn.Conv(channels, (self.grid, self.grid), padding="VALID", feature_group_count=channels,
                         use_bias=True, dtype=jnp.float32, param_dtype=jnp.float32,
                         kernel_init=torch_linear_kernel, bias_init=torch_linear_bias(self.grid**2),
                         precision=jax.lax.Precision.HIGHEST, name="conv")(pooled)
        gate = jax.nn.sigmoid(logits)  # (N, 1, 1, C)
        dtype = self.dtype if self.dtype is not None else y.dtype
        return (y * gate.astype(y.dtype)).astype(dtype)


def cra_parameter_count(channels: int, grid: int) -> int:
    """Parameters one CRA insertion adds: C * (k^2 + 1)."""
    return channels * (grid * grid + 1)


def _cra_factory(kwargs: dict, default_grid: int) -> functools.partial:
    grid = kwargs.pop("cra_grid", default_grid)
    if not is_positive_int(grid):
        raise ValueError(f"cra_grid must be an integer >= 1, got {grid!r}")
    return functools.partial(ChannelReassessment, grid=int(grid), dtype=kwargs.get("dtype"))


@register(r"resnet(\d+)-cra", "resnet{18,34,50,101,152}-cra (Channel Reassessment Attention; cra_grid=7)")
def _build_resnet_cra(match: re.Match, num_classes: int, **kwargs) -> ResNet:
    kwargs = dict(kwargs)
    default_grid = IMAGENET_GRID if kwargs.get("stem", "imagenet") == "imagenet" else CIFAR_GRID
    factory = _cra_factory(kwargs, default_grid)
    check_module_kwargs(ResNet, kwargs, reserved=("depth", "num_classes", "channel_attention"))
    return ResNet(depth=int(match.group(1)), num_classes=num_classes, channel_attention=factory, **kwargs)


@register(r"wrn-(\d+)-(\d+)-cra", "wrn-D-K-cra (WRN with Channel Reassessment Attention; cra_grid=4)")
def _build_wrn_cra(match: re.Match, num_classes: int, **kwargs) -> WideResNet:
    kwargs = dict(kwargs)
    factory = _cra_factory(kwargs, CIFAR_GRID)
    check_module_kwargs(WideResNet, kwargs, reserved=("depth", "width", "num_classes", "channel_attention"))
    return WideResNet(depth=int(match.group(1)), width=int(match.group(2)), num_classes=num_classes,
                      channel_attention=factory, **kwargs)

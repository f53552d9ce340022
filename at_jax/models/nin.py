"""Network-in-Network for CIFAR as the AT authors built it: szagoruyko/wide-residual-networks ``models/nin.lua``.

That file ("a modified version of NIN": dropout removed, BN added, the last layer a linear classifier instead
of class maps + average pooling) is the NIN of the AT paper's Table 1 (same authors, same year). Three
mlpconv blocks, each a k x k conv and two 1x1 convs, every conv -> BN (eps 1e-5) -> ReLU (``Block``,
nin.lua lines 13-18; convs without bias)::

    block 1: conv5x5(c11) conv1x1(c12) conv1x1(c13) -> max pool 3x3 / 2, ceil      (32 -> 16)   nin.lua 20-23
    block 2: conv5x5(c21) conv1x1(c22) conv1x1(c23) -> avg pool 3x3 / 2, ceil      (16 -> 8)    nin.lua 24-27
    block 3: conv3x3(c31) conv1x1(c32) conv1x1(c33) -> global avg pool -> Linear(c33, classes)   nin.lua 28-33

Widths ((c11, c12, c13), (c21, c22, c23), (c31, c32, c33)):
  - ``nin-wide``: nin.lua's ((192, 160, 96), (192, 192, 192), (192, 192, 192)); 1,005,642 parameters for
    10 classes, the paper's "1M".
  - ``nin-thin``: the paper prints no widths for its 0.2M NIN; here ((96, 80, 48), (80, 80, 80), (80, 80, 80)),
    nin.lua's structure at half width in block 1 and width 80 after it: 200,138 parameters for 10 classes.

Options:
  - ``batch_norm=False`` (``nin-*-nobn``, the AT paper's Table 3 networks): no BN, every conv with a bias.
  - ``relu_before_pool=False``: no ReLU on the last conv of any block, i.e. before each of the three pools
    (the Table 3 student "doesn't have ReLU activations before pooling layers", and the Table 3 teacher of
    the activation-AT row); that conv's BN (if any) stays.
Init as nin.lua (``utils.MSRinit``, and the ``model:reset()`` of ``utils.testModel``): convs N(0, 2 / (k * k *
in)), fan-in -- wide-residual-networks ``models/utils.lua`` ``MSRinit``, ``n = v.kW*v.kH*v.nInputPlane`` at
commit ea025180 (an older revision of that line used ``nOutputPlane``) -- biases 0; Torch7 BN scale U(0, 1),
bias 0; Torch7 ``nn.Linear`` default U(+-1/sqrt(in)). The global
pool averages the whole map (nin.lua's fixed 8 x 8 pool for a 32 x 32 input); the 3 x 3 average pool divides
by the clipped window size, as Torch's and PyTorch's ceil mode with zero padding.
Features for AT: the output of each mlpconv block before its pool (after its last ReLU, or its last conv/BN
with ``relu_before_pool=False``): (S, S/2, S/4) spatially, (c13, c23, c33) channels.
"""
from __future__ import annotations

import re
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from at_jax.models.layers import (BatchNorm, Dtype, check_module_kwargs, is_positive_int, kaiming_normal_fan_in,
                                  torch_batch_norm_scale, torch_linear_bias, torch_linear_kernel)
from at_jax.models.registry import register

NIN_WIDE_WIDTHS = ((192, 160, 96), (192, 192, 192), (192, 192, 192))
NIN_THIN_WIDTHS = ((96, 80, 48), (80, 80, 80), (80, 80, 80))
_KERNEL_SIZES = (5, 5, 3)  # the first conv of each mlpconv block; the others are 1x1


def _ceil_mode_padding(size: int, window: int = 3, stride: int = 2) -> tuple[int, int]:
    """(low, high) padding that makes a VALID pool produce ceil((size - window) / stride) + 1 outputs."""
    outputs = -(-(size - window) // stride) + 1
    return 0, max((outputs - 1) * stride + window - size, 0)


def _pool(x: jax.Array, block: int) -> jax.Array:
    """After block 1: 3x3/2 max pool; block 2: 3x3/2 average pool (ceil mode); block 3: global average."""
    if block == 3:
        return jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(x.dtype)
    padding = (_ceil_mode_padding(x.shape[1]), _ceil_mode_padding(x.shape[2]))
    if block == 1:
        return nn.max_pool(x, (3, 3), strides=(2, 2), padding=padding)
    return nn.avg_pool(x, (3, 3), strides=(2, 2), padding=padding, count_include_pad=False)


class NetworkInNetwork(nn.Module):
    """NIN; ``__call__(x, train)`` -> ``(logits float32 (N, num_classes), (block1, block2, block3))``."""

    num_classes: int = 10
    widths: tuple[tuple[int, ...], ...] = NIN_WIDE_WIDTHS
    batch_norm: bool = True
    relu_before_pool: bool = True
    dtype: Dtype = jnp.float32

    def __post_init__(self) -> None:
        shapes = tuple(len(w) for w in self.widths) if isinstance(self.widths, Sequence) else None
        if shapes != (3, 3, 3) or not all(is_positive_int(c) for w in self.widths for c in w):
            raise ValueError(
                "NIN widths must be ((c11, c12, c13), (c21, c22, c23), (c31, c32, c33)) of positive ints, "
                f"got {self.widths!r}"
            )
        if not is_positive_int(self.num_classes):
            raise ValueError(f"num_classes must be a positive integer, got {self.num_classes!r}")
        super().__post_init__()

    def _conv_unit(self, x: jax.Array, features: int, kernel: int, train: bool, name: str, relu: bool) -> jax.Array:
        """nin.lua's ``Block``: conv (no bias with BN) -> [BN] -> [ReLU], 'same' zero padding."""
        padding = (kernel - 1) // 2
        x = nn.Conv(features, (kernel, kernel), padding=((padding, padding), (padding, padding)),
                    use_bias=not self.batch_norm, dtype=self.dtype, param_dtype=jnp.float32,
                    kernel_init=kaiming_normal_fan_in, name=f"{name}_conv")(x)
        if self.batch_norm:
            x = BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                          scale_init=torch_batch_norm_scale, name=f"{name}_bn")(x)
        return nn.relu(x) if relu else x

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        out = jnp.asarray(x, self.dtype)
        features = []
        for block, (channels, kernel) in enumerate(zip(self.widths, _KERNEL_SIZES), start=1):
            for position, width in enumerate(channels, start=1):
                last = position == len(channels)
                out = self._conv_unit(out, width, kernel if position == 1 else 1, train,
                                      f"block{block}_{position}", relu=self.relu_before_pool or not last)
            features.append(out)
            out = _pool(out, block)
        fan_in = self.widths[-1][-1]
        logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
                          kernel_init=torch_linear_kernel, bias_init=torch_linear_bias(fan_in),
                          name="classifier")(out)
        return logits.astype(jnp.float32), tuple(features)


@register(r"nin-(thin|wide)(-nobn)?", "nin-thin, nin-wide, nin-thin-nobn, nin-wide-nobn")
def _build_nin(match: re.Match, num_classes: int, **kwargs) -> NetworkInNetwork:
    check_module_kwargs(NetworkInNetwork, kwargs, reserved=("num_classes", "widths"))
    no_batch_norm = match.group(2) is not None
    if no_batch_norm and kwargs.get("batch_norm", False):
        raise ValueError(
            f"model {match.group(0)!r} has no batch norm; drop batch_norm=True or the -nobn suffix"
        )
    kwargs.setdefault("batch_norm", not no_batch_norm)
    widths = NIN_THIN_WIDTHS if match.group(1) == "thin" else NIN_WIDE_WIDTHS
    return NetworkInNetwork(num_classes=num_classes, widths=widths, **kwargs)

"""Network-in-Network for CIFAR (Lin, Chen & Yan 2013, arXiv 1312.4400), the AT paper's NIN pair.

Three mlpconv blocks (a k x k conv followed by two 1x1 convs, each conv -> [BN] -> ReLU)::

    block 1: conv5x5(c11) conv1x1(c12) conv1x1(c13)   -> max pool 3x3 / 2     (32 -> 16)
    block 2: conv5x5(c21) conv1x1(c22) conv1x1(c23)   -> avg pool 3x3 / 2     (16 -> 8)
    block 3: conv3x3(c31) conv1x1(c32) conv1x1(num_classes) [ReLU] -> global avg pool = logits

Widths (c11, c12, c13), (c21, c22, c23), (c31, c32):
  - ``nin-wide`` (Lin et al.'s CIFAR network, 968,394 params with BN and 10 classes, the AT
    paper's "1M"): (192, 160, 96), (192, 192, 192), (192, 192)
  - ``nin-thin`` (200,794 params with BN, 200,154 without, 10 classes: the AT paper's 0.2M student;
    the paper gives no widths, these are chosen here): (96, 80, 48), (80, 80, 80), (88, 88)

Choices made here, stated:
  - ``batch_norm=True``: BN (eps 1e-5, PyTorch momentum 0.1) between every hidden conv and its
    ReLU, those convs then without bias. The last 1x1 conv (to ``num_classes``) is the classifier:
    it keeps its bias and never has BN. ``batch_norm=False`` (``nin-*-nobn``): every conv has a bias.
  - ``relu_before_pool=True``: ReLU on the class maps before the global average pool, as in the
    original Caffe model. ``False``: the class maps are averaged as they are (a linear classifier
    on pooled features), the variant of the AT paper's Table 3 student.
  - The 3x3 / 2 pools use ceil mode as in Caffe/Torch (windows start at 0, the last one clipped;
    the average divides by the clipped window size): 32 -> 16 -> 8.
  - No dropout (the original has dropout 0.5 after the pools): the model is deterministic.
  - Init: kaiming-normal fan-in for all conv kernels, biases 0, BN scale 1.
Features for AT: the output of each mlpconv block before its pooling (after its last ReLU, or
the raw class maps of block 3 when ``relu_before_pool=False``), at 32x32, 16x16, 8x8 for a
32x32 input: three maps for thin and wide alike, so they pair.
"""
from __future__ import annotations

import re
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from at_jax.models.layers import BatchNorm, Dtype, check_module_kwargs, is_positive_int, kaiming_normal_fan_in
from at_jax.models.registry import register

NIN_WIDE_WIDTHS = ((192, 160, 96), (192, 192, 192), (192, 192))
NIN_THIN_WIDTHS = ((96, 80, 48), (80, 80, 80), (88, 88))
_KERNEL_SIZES = (5, 5, 3)  # the first conv of each mlpconv block; the others are 1x1


def _ceil_mode_padding(size: int, window: int = 3, stride: int = 2) -> tuple[int, int]:
    """(low, high) padding that makes a VALID pool produce ceil((size - window) / stride) + 1 outputs."""
    outputs = -(-(size - window) // stride) + 1
    return 0, max((outputs - 1) * stride + window - size, 0)


class NetworkInNetwork(nn.Module):
    """NIN; ``__call__(x, train)`` -> ``(logits float32 (N, num_classes), (block1, block2, block3))``."""

    num_classes: int = 10
    widths: tuple[tuple[int, ...], ...] = NIN_WIDE_WIDTHS
    batch_norm: bool = True
    relu_before_pool: bool = True
    dtype: Dtype = jnp.float32

    def __post_init__(self) -> None:
        shapes = tuple(len(w) for w in self.widths) if isinstance(self.widths, Sequence) else None
        if shapes != (3, 3, 2) or not all(is_positive_int(c) for w in self.widths for c in w):
            raise ValueError(
                "NIN widths must be ((c11, c12, c13), (c21, c22, c23), (c31, c32)) of positive ints, "
                f"got {self.widths!r}"
            )
        if not is_positive_int(self.num_classes):
            raise ValueError(f"num_classes must be a positive integer, got {self.num_classes!r}")
        super().__post_init__()

    def _conv_unit(self, x: jax.Array, features: int, kernel: int, train: bool, name: str) -> jax.Array:
        """conv -> [BN] -> ReLU with 'same' zero padding."""
        padding = (kernel - 1) // 2
        x = nn.Conv(
            features,
            (kernel, kernel),
            padding=((padding, padding), (padding, padding)),
            use_bias=not self.batch_norm,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=kaiming_normal_fan_in,
            name=f"{name}_conv",
        )(x)
        if self.batch_norm:
            x = BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                          name=f"{name}_bn")(x)
        return nn.relu(x)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        out = jnp.asarray(x, self.dtype)
        features = []
        for block, (channels, kernel) in enumerate(zip(self.widths, _KERNEL_SIZES), start=1):
            out = self._conv_unit(out, channels[0], kernel, train, f"block{block}_1")
            for position, width in enumerate(channels[1:], start=2):
                out = self._conv_unit(out, width, 1, train, f"block{block}_{position}")
            if block < 3:
                features.append(out)
                padding = (_ceil_mode_padding(out.shape[1]), _ceil_mode_padding(out.shape[2]))
                if block == 1:
                    out = nn.max_pool(out, (3, 3), strides=(2, 2), padding=padding)
                else:
                    out = nn.avg_pool(out, (3, 3), strides=(2, 2), padding=padding, count_include_pad=False)
        class_maps = nn.Conv(
            self.num_classes,
            (1, 1),
            use_bias=True,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=kaiming_normal_fan_in,
            name="classifier",
        )(out)
        if self.relu_before_pool:
            class_maps = nn.relu(class_maps)
        features.append(class_maps)
        logits = jnp.mean(class_maps.astype(jnp.float32), axis=(1, 2))
        return logits, tuple(features)


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

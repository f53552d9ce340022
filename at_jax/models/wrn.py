"""Wide residual networks WRN-d-k exactly as in the official attention-transfer code.

szagoruyko/attention-transfer ``cifar.py`` (functional PyTorch), with depth ``d = 6n + 4``:

    x  = conv3x3(input, 3 -> 16)
    g0 = group(x,  16k, stride 1);  g1 = group(g0, 32k, stride 2);  g2 = group(g1, 64k, stride 2)
    logits = dense(global_avg_pool(relu(bn(g2))))

where a group is n pre-activation blocks (the first one carries the stride)::

    o = relu(bn0(x));  y = conv3x3(o, stride);  z = conv3x3(relu(bn1(y)))
    out = z + (conv1x1(o, stride) if the channel count changes else x)

The features used for attention transfer are ``(g0, g1, g2)``: the residual stream after each
group, before the next BN-ReLU. Convolutions have no bias. Init: kaiming-normal fan-in
(std sqrt(2 / fan_in)) for conv and dense kernels, dense bias 0, BN scale U(0, 1), BN bias 0
(the later revision of the official code; its first revision drew std 2 / sqrt(fan_in)).
BN: eps 1e-5, PyTorch momentum 0.1 (flax 0.9), running variance unbiased as in PyTorch.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from at_jax.models.layers import (
    torch_style_conv,
    BatchNorm,
    ChannelAttentionFactory,
    Dtype,
    check_module_kwargs,
    is_positive_int,
    kaiming_normal_fan_in,
)
from at_jax.models.registry import register

_BN_SCALE_INIT = nn.initializers.uniform(scale=1.0)  # U(0, 1) as the official bnparams


def _batch_norm(train: bool, dtype: Dtype, name: str) -> BatchNorm:
    return BatchNorm(
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        dtype=dtype,
        scale_init=_BN_SCALE_INIT,
        name=name,
    )


def _conv(features: int, kernel: int, stride: int, dtype: Dtype, name: str) -> nn.Conv:
    return torch_style_conv(features, kernel, stride, dtype, name, kaiming_normal_fan_in)


class WideBasicBlock(nn.Module):
    """Pre-activation basic block: ``z + shortcut`` with z = conv3x3(relu(bn1(conv3x3(relu(bn0(x)))))).

    ``channel_attention`` (optional zero-argument module factory) is applied to ``z`` before the
    addition, where a Squeeze-and-Excitation module goes.
    """

    out_channels: int
    stride: int = 1
    dtype: Dtype = jnp.float32
    channel_attention: ChannelAttentionFactory | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        preactivation = nn.relu(_batch_norm(train, self.dtype, "bn0")(x))
        y = _conv(self.out_channels, 3, self.stride, self.dtype, "conv0")(preactivation)
        y = nn.relu(_batch_norm(train, self.dtype, "bn1")(y))
        residual = _conv(self.out_channels, 3, 1, self.dtype, "conv1")(y)
        if self.channel_attention is not None:
            residual = self.channel_attention()(residual)
        if x.shape[-1] != self.out_channels or self.stride != 1:
            shortcut = _conv(self.out_channels, 1, self.stride, self.dtype, "convdim")(preactivation)
        else:
            shortcut = x
        return residual + shortcut


def valid_wrn_depths(count: int = 5) -> list[int]:
    """The first ``count`` valid WRN depths 6n + 4."""
    return [6 * n + 4 for n in range(1, count + 1)]


class WideResNet(nn.Module):
    """WRN-``depth``-``width`` for 32x32 inputs (any size works: the head pools globally).

    ``__call__(x, train)`` with x (N, H, W, 3) returns ``(logits, (g0, g1, g2))``; logits are float32
    of shape (N, num_classes), features are in ``dtype`` with 16k, 32k, 64k channels at strides
    1, 2, 4 of the input.
    """

    depth: int
    width: int
    num_classes: int = 10
    dtype: Dtype = jnp.float32
    channel_attention: ChannelAttentionFactory | None = None

    def __post_init__(self) -> None:
        if not is_positive_int(self.depth) or self.depth < 10 or (self.depth - 4) % 6 != 0:
            valid = ", ".join(str(d) for d in valid_wrn_depths())
            raise ValueError(f"WRN depth must be 6n+4 with n >= 1 ({valid}, ...), got {self.depth!r}")
        if not is_positive_int(self.width):
            raise ValueError(f"WRN width must be an integer >= 1, got {self.width!r}")
        if not is_positive_int(self.num_classes):
            raise ValueError(f"num_classes must be a positive integer, got {self.num_classes!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        blocks_per_group = (self.depth - 4) // 6
        widths = (16 * self.width, 32 * self.width, 64 * self.width)
        strides = (1, 2, 2)
        out = _conv(16, 3, 1, self.dtype, "conv0")(jnp.asarray(x, self.dtype))
        features = []
        for group, (channels, stride) in enumerate(zip(widths, strides)):
            for block in range(blocks_per_group):
                out = WideBasicBlock(
                    channels,
                    stride if block == 0 else 1,
                    dtype=self.dtype,
                    channel_attention=self.channel_attention,
                    name=f"group{group}_block{block}",
                )(out, train)
            features.append(out)
        out = nn.relu(_batch_norm(train, self.dtype, "bn")(out))
        pooled = jnp.mean(out.astype(jnp.float32), axis=(1, 2))
        logits = nn.Dense(
            self.num_classes,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=kaiming_normal_fan_in,
            bias_init=nn.initializers.zeros,
            name="fc",
        )(pooled.astype(self.dtype))
        return logits.astype(jnp.float32), tuple(features)


_OFFICIAL_BN_LEAVES = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}


def variables_from_official(state: Mapping[str, Any]) -> dict[str, dict]:
    """Maps the official code's flat PyTorch WRN state onto ``WideResNet`` variables.

    ``state`` holds arrays keyed as in szagoruyko/attention-transfer (params and stats, merged or
    not): ``conv0``, ``group{g}.block{i}.{conv0,conv1,convdim}`` (OIHW), ``....bn{0,1}.{weight,bias,
    running_mean,running_var}``, ``bn.*``, ``fc.weight`` (out, in), ``fc.bias``; an optional
    ``student.``/``teacher.`` prefix is dropped. Returns ``{"params": ..., "batch_stats": ...}``.
    """
    params: dict = {}
    batch_stats: dict = {}
    for key, value in state.items():
        key = re.sub(r"^(student|teacher)\.", "", key)
        value = np.asarray(value, dtype=np.float32)
        parts = key.split(".")
        if parts[-1] == "num_batches_tracked":
            continue
        if len(parts) >= 2 and parts[0].startswith("group") and parts[1].startswith("block"):
            parts = [f"{parts[0]}_{parts[1]}"] + parts[2:]
        if value.ndim == 4:  # conv kernel OIHW -> HWIO
            target, path, leaf, value = params, parts, "kernel", value.transpose(2, 3, 1, 0)
        elif parts[-2:] == ["fc", "weight"] or (parts[-1] == "weight" and value.ndim == 2):
            target, path, leaf, value = params, parts[:-1], "kernel", value.T
        else:
            leaf = _OFFICIAL_BN_LEAVES.get(parts[-1])
            if leaf is None:
                raise ValueError(f"unrecognised key {key!r} in the official WRN state")
            target = batch_stats if leaf in ("mean", "var") else params
            path = parts[:-1]
        node = target
        for name in path:
            node = node.setdefault(name, {})
        node[leaf] = jnp.asarray(value)
    return {"params": params, "batch_stats": batch_stats}


@register(r"wrn-(\d+)-(\d+)", "wrn-D-K (depth D = 6n+4: 10, 16, 22, 28, 34, 40, ...; width K >= 1)")
def _build_wrn(match: re.Match, num_classes: int, **kwargs) -> WideResNet:
    check_module_kwargs(WideResNet, kwargs, reserved=("depth", "width", "num_classes"))
    return WideResNet(
        depth=int(match.group(1)), width=int(match.group(2)), num_classes=num_classes, **kwargs
    )

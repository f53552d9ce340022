"""ResNet-18/34/50/101/152 as torchvision builds them (He et al. 2016, post-activation, v1.5).

    stem ("imagenet"): conv7x7/2(64) -> BN -> ReLU -> max pool 3x3/2      (224 -> 56)
    stem ("cifar"):    conv3x3/1(64) -> BN -> ReLU                          (no pooling)
    layer1..layer4: blocks of width 64, 128, 256, 512, strides 1, 2, 2, 2
    head: global average pool -> dense(num_classes)

Basic block (18, 34), expansion 1:
    out = relu(bn2(conv3x3(relu(bn1(conv3x3(x, stride))))) + shortcut(x))
Bottleneck (50, 101, 152), expansion 4, stride on the 3x3 conv (torchvision "v1.5"):
    out = relu(bn3(conv1x1(relu(bn2(conv3x3(relu(bn1(conv1x1(x))), stride))))) + shortcut(x))
shortcut(x) = bn(conv1x1(x, stride)) when the shape changes, else x. The optional
``channel_attention`` factory acts on the residual branch after its last BN, before the
addition (where Squeeze-and-Excitation goes). Features for AT: the outputs of the 4 layers.
Init as torchvision: conv kaiming-normal fan-out, BN scale 1 / bias 0 (scale 0 on each block's
last BN with ``zero_init_residual``), dense U(+-1/sqrt(fan_in)) for kernel and bias.
Parameter counts with 1000 classes: 11,689,512 / 21,797,672 / 25,557,032 (18 / 34 / 50).
"""
from __future__ import annotations

import re

import flax.linen as nn
import jax
import jax.numpy as jnp

from at_jax.models.layers import (
    torch_style_conv,
    BatchNorm,
    ChannelAttentionFactory,
    Dtype,
    check_module_kwargs,
    is_positive_int,
    kaiming_normal_fan_out,
    torch_linear_bias,
    torch_linear_kernel,
)
from at_jax.models.registry import register

#: depth -> (block kind, blocks per layer)
RESNET_CONFIGS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
_EXPANSION = {"basic": 1, "bottleneck": 4}
STEMS = ("imagenet", "cifar")


def _conv(features: int, kernel: int, stride: int, dtype: Dtype, name: str) -> nn.Conv:
    return torch_style_conv(features, kernel, stride, dtype, name, kaiming_normal_fan_out)


def _batch_norm(train: bool, dtype: Dtype, name: str, zero_scale: bool = False) -> BatchNorm:
    return BatchNorm(
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        dtype=dtype,
        scale_init=nn.initializers.zeros if zero_scale else nn.initializers.ones,
        name=name,
    )


class ResidualBlock(nn.Module):
    """A torchvision ``BasicBlock`` (kind "basic") or ``Bottleneck`` (kind "bottleneck")."""

    width: int
    stride: int = 1
    kind: str = "basic"
    dtype: Dtype = jnp.float32
    zero_init_residual: bool = False
    channel_attention: ChannelAttentionFactory | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        out_channels = self.width * _EXPANSION[self.kind]
        if self.kind == "basic":
            y = _conv(self.width, 3, self.stride, self.dtype, "conv1")(x)
            y = nn.relu(_batch_norm(train, self.dtype, "bn1")(y))
            y = _conv(self.width, 3, 1, self.dtype, "conv2")(y)
            y = _batch_norm(train, self.dtype, "bn2", self.zero_init_residual)(y)
        else:
            y = _conv(self.width, 1, 1, self.dtype, "conv1")(x)
            y = nn.relu(_batch_norm(train, self.dtype, "bn1")(y))
            y = _conv(self.width, 3, self.stride, self.dtype, "conv2")(y)
            y = nn.relu(_batch_norm(train, self.dtype, "bn2")(y))
            y = _conv(out_channels, 1, 1, self.dtype, "conv3")(y)
            y = _batch_norm(train, self.dtype, "bn3", self.zero_init_residual)(y)
        if self.channel_attention is not None:
            y = self.channel_attention()(y)
        if self.stride != 1 or x.shape[-1] != out_channels:
            shortcut = _conv(out_channels, 1, self.stride, self.dtype, "downsample_conv")(x)
            shortcut = _batch_norm(train, self.dtype, "downsample_bn")(shortcut)
        else:
            shortcut = x
        return nn.relu(y + shortcut)


class ResNet(nn.Module):
    """ResNet-``depth``; ``__call__(x, train)`` -> ``(logits float32, (layer1, ..., layer4))``."""

    depth: int
    num_classes: int = 1000
    stem: str = "imagenet"
    dtype: Dtype = jnp.float32
    zero_init_residual: bool = False
    channel_attention: ChannelAttentionFactory | None = None

    def __post_init__(self) -> None:
        if self.depth not in RESNET_CONFIGS:
            valid = ", ".join(str(d) for d in RESNET_CONFIGS)
            raise ValueError(f"ResNet depth must be one of {valid}, got {self.depth!r}")
        if self.stem not in STEMS:
            raise ValueError(f"ResNet stem must be one of {', '.join(STEMS)}, got {self.stem!r}")
        if not is_positive_int(self.num_classes):
            raise ValueError(f"num_classes must be a positive integer, got {self.num_classes!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        kind, blocks_per_layer = RESNET_CONFIGS[self.depth]
        out = jnp.asarray(x, self.dtype)
        if self.stem == "imagenet":
            out = _conv(64, 7, 2, self.dtype, "conv1")(out)
            out = nn.relu(_batch_norm(train, self.dtype, "bn1")(out))
            out = nn.max_pool(out, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        else:
            out = _conv(64, 3, 1, self.dtype, "conv1")(out)
            out = nn.relu(_batch_norm(train, self.dtype, "bn1")(out))
        features = []
        for layer, (width, num_blocks) in enumerate(zip((64, 128, 256, 512), blocks_per_layer), start=1):
            for block in range(num_blocks):
                out = ResidualBlock(
                    width,
                    stride=(1 if layer == 1 else 2) if block == 0 else 1,
                    kind=kind,
                    dtype=self.dtype,
                    zero_init_residual=self.zero_init_residual,
                    channel_attention=self.channel_attention,
                    name=f"layer{layer}_{block}",
                )(out, train)
            features.append(out)
        pooled = jnp.mean(out.astype(jnp.float32), axis=(1, 2))
        logits = nn.Dense(
            self.num_classes,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=torch_linear_kernel,
            bias_init=torch_linear_bias(pooled.shape[-1]),
            name="fc",
        )(pooled.astype(self.dtype))
        return logits.astype(jnp.float32), tuple(features)


@register(r"resnet(\d+)", "resnet18, resnet34, resnet50, resnet101, resnet152 (stem='imagenet'|'cifar')")
def _build_resnet(match: re.Match, num_classes: int, **kwargs) -> ResNet:
    check_module_kwargs(ResNet, kwargs, reserved=("depth", "num_classes"))
    return ResNet(depth=int(match.group(1)), num_classes=num_classes, **kwargs)

"""ConvNeXt (Liu et al. 2022) as timm builds ``convnext_atto`` and ``convnext_tiny``.

    stem:     conv 4x4 / stride 4 (bias) -> LayerNorm                          (H, W) -> (H/4, W/4)
    stage i:  [i > 0: LayerNorm -> conv 2x2 / stride 2 (bias)] -> depths[i] blocks, dims[i] channels
    block:    y = conv_dw 7x7 depthwise (pad 3, bias) -> LayerNorm -> fc1 (4 C) -> GELU -> fc2 (C)
              out = x + drop_path(gamma * y)           (layer scale gamma, init 1e-6)
    head:     global average pool -> LayerNorm -> dropout -> fc

``convnext-atto``: depths (2, 2, 6, 2), dims (40, 80, 160, 320) (timm builds it with ``conv_mlp=True``:
its fc1/fc2 are 1x1 convs, the same map as the dense layers here); ``convnext-tiny``: depths (3, 3, 9, 3),
dims (96, 192, 384, 768). Parameter counts with 1000 classes: 3,695,520 and 28,589,128, as timm's
(its README: 3.7M and 28.6M; 3,708,400 is ``convnextv2_atto``, whose GRN adds 8C per block and drops
the layer scale's C).
LayerNorm eps 1e-6 over channels (timm ``LayerNorm`` / ``LayerNorm2d``); GELU the exact erf form.
Convs use no padding but the depthwise one's, so sizes floor as in PyTorch (32 -> 8, 4, 2, 1); inputs need H, W >= 32.

Features for attention transfer: the four stage outputs, NHWC with dims[i] channels at strides
4, 8, 16, 32.

Parameter paths (flax, '/'-joined) and the timm ``state_dict`` keys they take (dots before an index
become underscores, a flax kernel is the transposed PyTorch weight: OIHW -> HWIO for convs, (out, in)
-> (in, out) for dense layers, and (out, in, 1, 1) -> (in, out) for atto's 1x1-conv MLP)::

    stem_0/{kernel,bias}                        stem.0.{weight,bias}
    stem_1/{scale,bias}                         stem.1.{weight,bias}
    stages_{i}/downsample_0/{scale,bias}        stages.{i}.downsample.0.{weight,bias}        (i >= 1)
    stages_{i}/downsample_1/{kernel,bias}       stages.{i}.downsample.1.{weight,bias}        (i >= 1)
    stages_{i}/blocks_{j}/conv_dw/{kernel,bias} stages.{i}.blocks.{j}.conv_dw.{weight (C,1,7,7) -> (7,7,1,C), bias}
    stages_{i}/blocks_{j}/norm/{scale,bias}     stages.{i}.blocks.{j}.norm.{weight,bias}
    stages_{i}/blocks_{j}/mlp_fc1/{kernel,bias} stages.{i}.blocks.{j}.mlp.fc1.{weight,bias}
    stages_{i}/blocks_{j}/mlp_fc2/{kernel,bias} stages.{i}.blocks.{j}.mlp.fc2.{weight,bias}
    stages_{i}/blocks_{j}/gamma                 stages.{i}.blocks.{j}.gamma
    head_norm/{scale,bias}                      head.norm.{weight,bias}
    head_fc/{kernel,bias}                       head.fc.{weight,bias}

Init as timm: conv and dense kernels N(0, 0.02^2) (``trunc_normal_(std=.02)``, cut at 100 sigma),
biases 0, LayerNorm 1 / 0, gamma 1e-6.
"""
from __future__ import annotations

import re
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from at_jax.models.layers import Dtype, check_module_kwargs, dropout, is_positive_int
from at_jax.models.registry import register
from at_jax.models.vit import dense, drop_path, dropout_key, gelu, layer_norm, linear_rates, timm_normal

#: name -> (depths, dims), timm's ``convnext_atto`` and ``convnext_tiny``.
CONVNEXT_CONFIGS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "atto": ((2, 2, 6, 2), (40, 80, 160, 320)),
    "tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
}


def _conv(features: int, kernel: int, stride: int, dtype: Dtype, name: str, groups: int = 1) -> nn.Conv:
    """A square conv with bias, padding (kernel - 1) // 2 at stride 1 and none when strided (timm)."""
    pad = (kernel - 1) // 2 if stride == 1 else 0
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                   feature_group_count=groups, dtype=dtype, param_dtype=jnp.float32, kernel_init=timm_normal,
                   bias_init=nn.initializers.zeros, name=name)


class ConvNeXtBlock(nn.Module):
    """``x + drop_path(gamma * mlp_fc2(gelu(mlp_fc1(norm(conv_dw(x))))))``, channels kept."""

    drop_path: float = 0.0
    layer_scale_init: float = 1e-6
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        channels = x.shape[-1]
        y = _conv(channels, 7, 1, self.dtype, "conv_dw", groups=channels)(x)
        y = layer_norm(self.dtype, "norm")(y)
        y = gelu(dense(4 * channels, self.dtype, "mlp_fc1")(y))
        y = dense(channels, self.dtype, "mlp_fc2")(y)
        gamma = self.param("gamma", nn.initializers.constant(self.layer_scale_init), (channels,), jnp.float32)
        y = y * gamma.astype(y.dtype)
        return x + drop_path(y, self.drop_path, dropout_key(self, train, self.drop_path))


class ConvNeXtStage(nn.Module):
    """``downsample_0`` (LayerNorm) and ``downsample_1`` (2x2 / 2 conv to ``dim``) when ``downsample``, then
    ``blocks_0`` ... with the given drop-path rates."""

    dim: int
    drop_path_rates: Sequence[float]
    downsample: bool = True
    layer_scale_init: float = 1e-6
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if self.downsample:
            x = layer_norm(self.dtype, "downsample_0")(x)
            x = _conv(self.dim, 2, 2, self.dtype, "downsample_1")(x)
        for index, rate in enumerate(self.drop_path_rates):
            x = ConvNeXtBlock(rate, self.layer_scale_init, self.dtype, name=f"blocks_{index}")(x, train)
        return x


class ConvNeXt(nn.Module):
    """``__call__(x, train)`` with x (B, H, W, C) returns ``(logits (B, num_classes) float32, the four stage
    outputs)``. ``dropout``: before ``head_fc`` (timm's ``drop_rate``); ``drop_path``: stochastic depth of the
    last block, linear from 0 over all blocks. Both need a ``'dropout'`` rng in training."""

    depths: tuple[int, ...]
    dims: tuple[int, ...]
    num_classes: int = 1000
    dropout: float = 0.0
    drop_path: float = 0.0
    layer_scale_init: float = 1e-6
    dtype: Dtype = jnp.float32

    def __post_init__(self) -> None:
        if len(self.depths) != 4 or len(self.dims) != 4:
            raise ValueError(f"depths and dims need 4 entries, got {self.depths!r} and {self.dims!r}")
        if not all(is_positive_int(v) for v in (*self.depths, *self.dims, self.num_classes)):
            raise ValueError("depths, dims and num_classes must be integers >= 1")
        for name in ("dropout", "drop_path"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        if jnp.ndim(x) != 4 or min(jnp.shape(x)[1:3]) < 32:
            raise ValueError(f"ConvNeXt input must be (B, H, W, C) with H, W >= 32 (its total stride), "
                             f"got shape {jnp.shape(x)}")
        x = _conv(self.dims[0], 4, 4, self.dtype, "stem_0")(jnp.asarray(x, self.dtype))
        x = layer_norm(self.dtype, "stem_1")(x)
        rates = linear_rates(self.drop_path, sum(self.depths))
        features, start = [], 0
        for index, (depth, dim) in enumerate(zip(self.depths, self.dims)):
            x = ConvNeXtStage(dim, tuple(rates[start:start + depth]), downsample=index > 0,
                              layer_scale_init=self.layer_scale_init, dtype=self.dtype,
                              name=f"stages_{index}")(x, train)
            features.append(x)
            start += depth
        pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(self.dtype)
        pooled = layer_norm(self.dtype, "head_norm")(pooled)
        pooled = dropout(pooled, self.dropout, dropout_key(self, train, self.dropout))
        logits = dense(self.num_classes, self.dtype, "head_fc")(pooled)
        return logits.astype(jnp.float32), tuple(features)


@register(r"convnext-(atto|tiny)", "convnext-atto, convnext-tiny (timm; options dropout=, drop_path=)")
def _build_convnext(match: re.Match, num_classes: int, **kwargs) -> ConvNeXt:
    check_module_kwargs(ConvNeXt, kwargs, reserved=("depths", "dims", "num_classes"))
    depths, dims = CONVNEXT_CONFIGS[match.group(1)]
    return ConvNeXt(depths=depths, dims=dims, num_classes=num_classes, **kwargs)

"""Learn To Pay Attention (Jetley et al., ICLR 2018, arXiv 1804.02391): VGG-16-BN with attention.

The backbone follows the authors' public code (SaoYan/LearnToPayAttention, ``model1.py``
``AttnVGG_before`` with ``blocks.py``: attention *before* the max-pools), for an S x S input::

    block1: 2 x conv3x3(64)  -> BN -> ReLU                      (S)      first two max-pools removed
    block2: 2 x conv3x3(128) -> BN -> ReLU                      (S)
    block3: 3 x conv3x3(256) -> BN -> ReLU      = l1 (conv7)    (S)      -> max pool 2x2
    block4: 3 x conv3x3(512) -> BN -> ReLU      = l2 (conv10)   (S/2)    -> max pool 2x2
    block5: 3 x conv3x3(512) -> BN -> ReLU      = l3 (conv13)   (S/4)    -> max pool 2x2
    block6: 2 x [conv3x3(512) -> BN -> ReLU -> max pool 2x2]             (S/8 -> S/32)
    g = dense(flatten(block6)) : 512 -> 512   (the code's conv with kernel S/32; no ReLU after it)

Attention at level s with local features ``l`` (N, H, W, C) and the global feature ``g`` (N, 512);
``l`` is first projected to g's width by a bias-free 1x1 conv where C != 512 (level 1):

    'pc' (parametrised compatibility):  c_i = <u, l_i + g>      (u: a bias-free 1x1 conv to 1 channel)
    'dp' (dot product):                 c_i = <l_i, g>
    a = softmax_i(c) over all H*W positions;   g_a = sum_i a_i l_i   (N, 512)

'concat': logits = dense(concat_s g_a^s);  'indep': one dense per level, logits = mean_s logits_s
(the paper averages the levels' independent predictions). g itself is not classified when there
is attention; the plain ``vgg`` baseline classifies g. Levels: att3 = (1, 2, 3), att2 = (2, 3).

Choices stated: conv biases kept (as in the code, 15.3M-parameter backbone); the max-pools use ceil
mode (identical to PyTorch's floor mode for even sizes, and a 1x1 map stays 1x1, so inputs smaller
than 32 work); init as the code's default ``xavierUniform``: conv kernels Glorot-uniform with gain
sqrt(2), dense Glorot-uniform, biases 0, BN scale U(0, 1), BN eps 1e-5, PyTorch momentum 0.1.
Each attention map ``a`` (N, H, W), float32, sums to 1 per example and is sown as
``self.sow('intermediates', 'attention', a)`` in level order (see :func:`attention_maps`). The
features returned for attention transfer are the local features ``(l1, l2, l3)`` of every variant.
"""
from __future__ import annotations

import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from at_jax.models.layers import BatchNorm, Dtype, check_module_kwargs, is_positive_int
from at_jax.models.registry import register

COMPATIBILITIES = ("pc", "dp")
AGGREGATIONS = ("concat", "indep")
GLOBAL_WIDTH = 512
#: (width, number of 3x3 convs) of blocks 1-5; l1, l2, l3 are the outputs of blocks 3, 4, 5.
VGG_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))

_conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_avg", "uniform")  # xavier_uniform, gain sqrt 2
_dense_kernel_init = nn.initializers.xavier_uniform()
_BN_SCALE_INIT = nn.initializers.uniform(scale=1.0)


def _conv(features: int, kernel: int, dtype: Dtype, name: str, use_bias: bool = True) -> nn.Conv:
    padding = (kernel - 1) // 2
    return nn.Conv(features, (kernel, kernel), padding=((padding, padding), (padding, padding)),
                   use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32,
                   kernel_init=_conv_kernel_init, name=name)


def _dense(features: int, dtype: Dtype, name: str) -> nn.Dense:
    return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, kernel_init=_dense_kernel_init,
                    bias_init=nn.initializers.zeros, name=name)


def max_pool_ceil(x: jax.Array) -> jax.Array:
    """2x2 / 2 max pool in ceil mode: an odd trailing row/column forms its own (clipped) window."""
    pad_h, pad_w = x.shape[1] % 2, x.shape[2] % 2
    return nn.max_pool(x, (2, 2), strides=(2, 2), padding=((0, pad_h), (0, pad_w)))


class LinearAttention(nn.Module):
    """One LTPA attention estimator: ``(l, g) -> (a (N, H, W) float32, g_a (N, C))``.

    ``l`` (N, H, W, C) must already have g's width C. 'pc': c = conv1x1_u(l + g); 'dp': c = <l, g>.
    a = softmax of c over the H*W positions (computed in float32); g_a = sum_i a_i l_i.
    """

    compatibility: str = "pc"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, local: jax.Array, global_feature: jax.Array) -> tuple[jax.Array, jax.Array]:
        n, h, w, c = local.shape
        if self.compatibility == "pc":
            scores = _conv(1, 1, self.dtype, "u", use_bias=False)(local + global_feature[:, None, None, :])
            scores = scores[..., 0]
        else:
            scores = jnp.einsum("nhwc,nc->nhw", local, global_feature)
        scores = scores.astype(jnp.float32).reshape(n, h * w)
        attention = jax.nn.softmax(scores, axis=-1).reshape(n, h, w)
        descriptor = jnp.einsum("nhw,nhwc->nc", attention, local.astype(jnp.float32))
        return attention, descriptor.astype(self.dtype)


class VGGAttention(nn.Module):
    """VGG-16-BN with LTPA attention; ``attention_levels=()`` is the plain ``vgg`` baseline.

    ``__call__(x, train)`` -> ``(logits float32 (N, num_classes), (l1, l2, l3))``; sows one map per
    attention level (see the module docstring).
    """

    num_classes: int = 10
    attention_levels: tuple[int, ...] = (1, 2, 3)
    compatibility: str = "pc"
    aggregation: str = "concat"
    dtype: Dtype = jnp.float32

    def __post_init__(self) -> None:
        if not is_positive_int(self.num_classes):
            raise ValueError(f"num_classes must be a positive integer, got {self.num_classes!r}")
        levels = tuple(self.attention_levels)
        if any(level not in (1, 2, 3) for level in levels) or len(set(levels)) != len(levels):
            raise ValueError(f"attention_levels must be distinct values of 1, 2, 3, got {levels!r}")
        if self.compatibility not in COMPATIBILITIES:
            raise ValueError(f"compatibility must be one of {COMPATIBILITIES}, got {self.compatibility!r}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        super().__post_init__()

    def _conv_bn_relu(self, x: jax.Array, features: int, train: bool, name: str) -> jax.Array:
        x = _conv(features, 3, self.dtype, f"{name}_conv")(x)
        x = BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                      scale_init=_BN_SCALE_INIT, name=f"{name}_bn")(x)
        return nn.relu(x)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        out = jnp.asarray(x, self.dtype)
        local_features = []
        for block, (width, num_convs) in enumerate(VGG_BLOCKS, start=1):
            for index in range(num_convs):
                out = self._conv_bn_relu(out, width, train, f"block{block}_{index}")
            if block >= 3:
                local_features.append(out)
                out = max_pool_ceil(out)
        for index in range(2):
            out = max_pool_ceil(self._conv_bn_relu(out, GLOBAL_WIDTH, train, f"block6_{index}"))
        global_feature = _dense(GLOBAL_WIDTH, self.dtype, "dense")(out.reshape(out.shape[0], -1))

        if not self.attention_levels:
            logits = _dense(self.num_classes, self.dtype, "classify")(global_feature)
            return logits.astype(jnp.float32), tuple(local_features)

        descriptors = []
        for level in self.attention_levels:
            local = local_features[level - 1]
            if local.shape[-1] != GLOBAL_WIDTH:
                local = _conv(GLOBAL_WIDTH, 1, self.dtype, f"projector{level}", use_bias=False)(local)
            attention, descriptor = LinearAttention(self.compatibility, self.dtype,
                                                    name=f"attention{level}")(local, global_feature)
            self.sow("intermediates", "attention", attention)
            descriptors.append(descriptor)
        if self.aggregation == "concat":
            logits = _dense(self.num_classes, self.dtype, "classify")(jnp.concatenate(descriptors, -1))
            logits = logits.astype(jnp.float32)
        else:
            logits = jnp.mean(jnp.stack([
                _dense(self.num_classes, self.dtype, f"classify{level}")(descriptor).astype(jnp.float32)
                for level, descriptor in zip(self.attention_levels, descriptors)]), axis=0)
        return logits, tuple(local_features)


def attention_maps(model: nn.Module, variables: Any, x: jax.Array) -> tuple[jax.Array, ...]:
    """The maps a model sows under ``('intermediates', 'attention')`` in inference mode, in level order.

    Returns ``()`` for a model that sows none (e.g. the plain ``vgg``). Each map is (N, H, W).
    """
    _, state = model.apply(variables, x, train=False, mutable=["intermediates"])
    return tuple(state.get("intermediates", {}).get("attention", ()))


@register(r"vgg", "vgg (VGG-16-BN, LTPA's baseline)")
def _build_vgg(match: re.Match, num_classes: int, **kwargs) -> VGGAttention:
    del match
    check_module_kwargs(VGGAttention, kwargs,
                        reserved=("num_classes", "attention_levels", "compatibility", "aggregation"))
    return VGGAttention(num_classes=num_classes, attention_levels=(), **kwargs)


@register(r"vgg-att([23])-(concat|indep)-(pc|dp)",
          "vgg-att{2,3}-{concat,indep}-{pc,dp} (Learn To Pay Attention)")
def _build_vgg_attention(match: re.Match, num_classes: int, **kwargs) -> VGGAttention:
    check_module_kwargs(VGGAttention, kwargs,
                        reserved=("num_classes", "attention_levels", "compatibility", "aggregation"))
    levels = (1, 2, 3) if match.group(1) == "3" else (2, 3)
    return VGGAttention(num_classes=num_classes, attention_levels=levels, aggregation=match.group(2),
                        compatibility=match.group(3), **kwargs)

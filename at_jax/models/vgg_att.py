"""Learn To Pay Attention (Jetley et al., ICLR 2018, arXiv 1804.02391) as the authors built it, and its VGG baseline.

The networks follow the authors' Torch code, saumya-jetley/cd_ICLR18_LearnToPayAttention (``VGGNet/``), whose
backbone is cifar.torch's ``vgg_bn_drop`` (szagoruyko/cifar.torch ``models/vgg_bn_drop.lua``). Every conv is
``ConvBNReLU``: conv3x3 (with bias) -> BN (eps 1e-3) -> ReLU, followed by Dropout(0.3) after conv1 and
Dropout(0.4) after conv3, 5, 6, 8, 9, 11, 12, 14, 15 (none after conv2, 4, 7, 10, 13).

``vgg`` (cifar.torch ``vgg_bn_drop``, the baseline the LTPA paper compares with), for a 32 x 32 input::

    conv1-2 (64)  pool  conv3-4 (128)  pool  conv5-7 (256)  pool  conv8-10 (512)  pool  conv11-13 (512)  pool
    -> 1 x 1 x 512 -> Dropout(0.5) -> Linear(512, 512) -> BN -> ReLU -> Dropout(0.5) -> Linear(512, classes)

``vgg-att{2,3}-*`` (the authors' ``models_CIFARS/{2,3}_level_atten_1global*``): the first two pools removed,
local features l1 = conv7 (256, S x S), l2 = conv10 (512, S/2), l3 = conv13 (512, S/4), taken before pooling::

    global: pool conv14 pool conv15 pool -> 1 x 1 x 512 -> Dropout(0.5) -> Linear(512, 512) = g  (no ReLU)
    attention at level s (``3.*_vgg_atten.lua``), l = l_s (N, H, W, C):
        C = 512: g as it is;  C = 256 (level 1): g <- Linear(512, 256)(Dropout(0.5)(ReLU(BN(g))))  (g projected down)
        'pc':  c_i = u(l_i + g)   (u: conv1x1 C -> 1 with bias);   'dp':  c_i = <l_i, g>
        a = softmax_i(c) over the H*W positions;   g_a = sum_i a_i l_i   (N, C)
    heads (``vgg_match.lua``): each g_a -> BN -> ReLU -> Dropout(0.5), then
        'concat': Linear(sum C, classes) on the concatenation;  'indep' (``*_pred-ensemble/vgg_match.lua``):
        one Linear(C, classes) per level, logits *summed* (``nn.CAddTable``).
    att3 = levels (1, 2, 3) (concat width 1280), att2 = (2, 3) (width 1024). g itself is not classified.

Source lines followed (repository saumya-jetley/cd_ICLR18_LearnToPayAttention): ConvBNReLU, dropout and the
``vgg`` head, ``VGGNet/models/models_CIFARS/vgg_bn_drop.lua`` lines 6-11, 17-38, 41-47 (= cifar.torch's file);
conv1-7 without pools, ``VGGNet/Training_CIFARS/models_CIFARS/3_level_atten_3global/1.1_vgg_local.lua`` lines
17-25; the pool after conv7 and conv8-10, ``.../models/models_CIFARS/2_level_atten_1global/1.1_vgg_local.lua``
lines 18-31; the global net, ``.../models_CIFARS/2_level_atten_1global/2.2_vgg_global.lua`` lines 18-27 (its
BN-ReLU-Dropout-Linear after g commented out, lines 28-31); level-1 down-projection and 'pc',
``.../models_CIFARS/3_level_atten_1global/3.1_vgg_atten.lua`` lines 11-14 and 19-32; 512-wide attention,
``VGGNet/models/models_CIFARS/3_level_atten_1global_pred-ensemble/3_vgg_atten.lua`` lines 11-27; 'dp',
``VGGNet/models/models_CIFARS/2_level_atten_1globalDP/1_vgg_atten.lua`` lines 16-20; concat head,
``VGGNet/models/models_CIFARS/3_level_atten_1global/vgg_match.lua`` lines 12-26; indep head,
``VGGNet/models/models_CIFARS/3_level_atten_1global_pred-ensemble/vgg_match.lua`` lines 12-27. 'dp' at level 1
(att3-*-dp) has no file in the authors' code; here it uses the same down-projection of g as 'pc'.

Init as the Torch code: ``MSRinit`` for every conv (N(0, 2 / (k * k * out)), bias 0; the attention's u too),
Torch7 ``nn.Linear`` default (U(+-1/sqrt(in)) for weight and bias), Torch7 BN (scale U(0, 1), bias 0),
momentum 0.1. Pools are 2 x 2 max pools in ceil mode. Dropout randomness: :class:`DropoutKeys`.

``gradient_averaging=True`` reproduces the authors' hand-written backward (``VGGNet/lua_source/
main_AttLevel3_1global.lua``, train(): ``mglobal_3:backward(lfeat_3, (df_feat_1[2]+df_feat_2[2]+df_feat_3[2])/3)``,
``mlocal_3:backward(lfeat_2,(df_lfeat_3+df_feat_3[1])/2)``, ...): where an attended l_s feeds both its attention
unit and the next stage, each branch's gradient is halved, and g's gradient is the *mean* over the attention
units. The forward pass is unchanged; the default (False) keeps the true gradient, which input-gradient terms
need. ``configs/ltpa_cifar.py`` turns it on for the attention models.

Each attention map ``a`` (N, H, W), float32, sums to 1 and is sown as ``('intermediates', 'attention')`` in
level order (see :func:`attention_maps`). The features returned for attention transfer are (conv7, conv10,
conv13) outputs (before pooling) for every name: (S, S/2, S/4) with attention, (S/4, S/8, S/16) for ``vgg``.
"""
from __future__ import annotations

import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from at_jax.models.layers import (BatchNorm, Dtype, DropoutKeys, check_module_kwargs, dropout, is_positive_int,
                                  kaiming_normal_fan_out, scale_gradient, torch_batch_norm_scale,
                                  torch_linear_bias, torch_linear_kernel)
from at_jax.models.registry import register

COMPATIBILITIES = ("pc", "dp")
AGGREGATIONS = ("concat", "indep")
GLOBAL_WIDTH = 512
#: (width, dropout rate after it) of conv1..conv13 (``vgg_bn_drop.lua``); conv14, conv15 are (512, 0.4).
VGG_CONVS = ((64, 0.3), (64, 0.0), (128, 0.4), (128, 0.0), (256, 0.4), (256, 0.4), (256, 0.0),
             (512, 0.4), (512, 0.4), (512, 0.0), (512, 0.4), (512, 0.4), (512, 0.0))
#: The last conv of each of the five VGG stages (a pool follows each in ``vgg``); l1, l2, l3 = conv7, 10, 13.
STAGE_ENDS = (2, 4, 7, 10, 13)
LOCAL_CONVS = (7, 10, 13)
CONV_BN_EPS = 1e-3     # ConvBNReLU's nn.SpatialBatchNormalization(n, 1e-3)
DENSE_BN_EPS = 1e-5    # nn.BatchNormalization(n) default
HEAD_DROPOUT = 0.5


def site_key(keys: jax.Array | None, site: int) -> jax.Array | None:
    """The dropout key of dropout site ``site`` in one forward pass (None in inference)."""
    return None if keys is None else jax.random.fold_in(keys, site)


def max_pool_ceil(x: jax.Array) -> jax.Array:
    """2x2 / 2 max pool in ceil mode: an odd trailing row/column forms its own (clipped) window."""
    pad_h, pad_w = x.shape[1] % 2, x.shape[2] % 2
    return nn.max_pool(x, (2, 2), strides=(2, 2), padding=((0, pad_h), (0, pad_w)))


def torch_dense(features: int, fan_in: int, dtype: Dtype, name: str) -> nn.Dense:
    """Torch7 ``nn.Linear(fan_in, features)`` with its default init, float32 parameters."""
    return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, kernel_init=torch_linear_kernel,
                    bias_init=torch_linear_bias(fan_in), name=name)


def dense_bn(train: bool, dtype: Dtype, name: str) -> BatchNorm:
    """Torch7 ``nn.BatchNormalization(n)``: eps 1e-5, momentum 0.1, scale U(0, 1)."""
    return BatchNorm(use_running_average=not train, momentum=0.9, epsilon=DENSE_BN_EPS, dtype=dtype,
                     scale_init=torch_batch_norm_scale, name=name)


class ConvBNReLU(nn.Module):
    """cifar.torch's ``ConvBNReLU``: conv3x3 (bias, MSR init) -> BN (eps 1e-3) -> ReLU [-> Dropout(rate)]."""

    features: int
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, key: jax.Array | None) -> jax.Array:
        x = nn.Conv(self.features, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, param_dtype=jnp.float32,
                    kernel_init=kaiming_normal_fan_out, bias_init=nn.initializers.zeros, name="conv")(x)
        x = BatchNorm(use_running_average=not train, momentum=0.9, epsilon=CONV_BN_EPS, dtype=self.dtype,
                      scale_init=torch_batch_norm_scale, name="bn")(x)
        return dropout(nn.relu(x), self.dropout_rate, key)


def _check_num_classes(num_classes: Any) -> None:
    if not is_positive_int(num_classes):
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")


def _flatten_1x1(x: jax.Array, name: str) -> jax.Array:
    """Torch's ``nn.View(512)``: the last map must be 1 x 1 (inputs up to 32 x 32)."""
    if x.shape[1:3] != (1, 1):
        raise ValueError(f"{name} expects inputs of at most 32 x 32 (its last map must be 1 x 1, "
                         f"got {x.shape[1]} x {x.shape[2]})")
    return x.reshape(x.shape[0], x.shape[-1])


class VGGBNDrop(nn.Module):
    """cifar.torch ``vgg_bn_drop`` (the ``vgg`` baseline): ``(logits float32, (conv7, conv10, conv13))``."""

    num_classes: int = 10
    dtype: Dtype = jnp.float32

    def __post_init__(self) -> None:
        _check_num_classes(self.num_classes)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        keys = DropoutKeys(name="dropout")(train)
        out, features = jnp.asarray(x, self.dtype), []
        for index, (width, rate) in enumerate(VGG_CONVS, start=1):
            out = ConvBNReLU(width, rate, self.dtype, name=f"conv{index}")(out, train, site_key(keys, index))
            if index in LOCAL_CONVS:
                features.append(out)
            if index in STAGE_ENDS:
                out = max_pool_ceil(out)
        out = dropout(_flatten_1x1(out, "vgg"), HEAD_DROPOUT, site_key(keys, 100))
        out = torch_dense(GLOBAL_WIDTH, GLOBAL_WIDTH, self.dtype, "fc1")(out)
        out = nn.relu(dense_bn(train, self.dtype, "fc1_bn")(out))
        out = dropout(out, HEAD_DROPOUT, site_key(keys, 101))
        logits = torch_dense(self.num_classes, GLOBAL_WIDTH, self.dtype, "classify")(out)
        return logits.astype(jnp.float32), tuple(features)


class LinearAttention(nn.Module):
    """One LTPA attention estimator: ``(l, g) -> (a (N, H, W) float32, g_a (N, C))`` (module docstring).

    ``l`` (N, H, W, C), ``g`` (N, 512). Where C != 512, g is projected down: Linear(512, C)(Dropout(0.5)(
    ReLU(BN(g)))). 'pc': c = conv1x1_u(l + g) (with bias); 'dp': c = <l, g>. a = softmax of c over the
    H*W positions (float32); g_a = sum_i a_i l_i.
    """

    compatibility: str = "pc"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, local: jax.Array, global_feature: jax.Array, train: bool,
                 key: jax.Array | None) -> tuple[jax.Array, jax.Array]:
        n, h, w, c = local.shape
        if c != global_feature.shape[-1]:
            projected = nn.relu(dense_bn(train, self.dtype, "project_bn")(global_feature))
            projected = dropout(projected, HEAD_DROPOUT, key)
            global_feature = torch_dense(c, global_feature.shape[-1], self.dtype, "project")(projected)
        if self.compatibility == "pc":
            u = nn.Conv(1, (1, 1), dtype=self.dtype, param_dtype=jnp.float32, kernel_init=kaiming_normal_fan_out,
                        bias_init=nn.initializers.zeros, name="u")
            scores = u(local + global_feature[:, None, None, :])[..., 0]
        else:
            scores = jnp.einsum("nhwc,nc->nhw", local, global_feature)
        scores = scores.astype(jnp.float32).reshape(n, h * w)
        attention = jax.nn.softmax(scores, axis=-1).reshape(n, h, w)
        descriptor = jnp.einsum("nhw,nhwc->nc", attention, local.astype(jnp.float32))
        return attention, descriptor.astype(self.dtype)


class VGGAttention(nn.Module):
    """LTPA: VGG with attention at ``attention_levels`` (module docstring).

    ``__call__(x, train)`` -> ``(logits float32 (N, num_classes), (l1, l2, l3))``; sows one map per level.
    """

    num_classes: int = 10
    attention_levels: tuple[int, ...] = (1, 2, 3)
    compatibility: str = "pc"
    aggregation: str = "concat"
    gradient_averaging: bool = False
    dtype: Dtype = jnp.float32

    def __post_init__(self) -> None:
        _check_num_classes(self.num_classes)
        levels = tuple(self.attention_levels)
        if not levels or any(level not in (1, 2, 3) for level in levels) or len(set(levels)) != len(levels):
            raise ValueError(f"attention_levels must be distinct values of 1, 2, 3, got {levels!r}")
        if self.compatibility not in COMPATIBILITIES:
            raise ValueError(f"compatibility must be one of {COMPATIBILITIES}, got {self.compatibility!r}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        super().__post_init__()

    def _branch(self, x: jax.Array, level: int) -> jax.Array:
        """An attended l_s as one of its two consumers sees it: gradient halved under ``gradient_averaging``."""
        attended = level in self.attention_levels
        return scale_gradient(x, 0.5) if self.gradient_averaging and attended else x

    def _backbone(self, x: jax.Array, train: bool, keys: jax.Array | None):
        """conv1..conv15 -> ((l1, l2, l3) as computed, (l1, l2, l3) for attention, g (N, 512))."""
        out, local, attended = jnp.asarray(x, self.dtype), [], []
        for index, (width, rate) in enumerate(VGG_CONVS + ((512, 0.4), (512, 0.4)), start=1):
            out = ConvBNReLU(width, rate, self.dtype, name=f"conv{index}")(out, train, site_key(keys, index))
            if index in LOCAL_CONVS:
                level = LOCAL_CONVS.index(index) + 1
                local.append(out)
                attended.append(self._branch(out, level))
                out = self._branch(out, level)
            if index in LOCAL_CONVS or index > LOCAL_CONVS[-1]:  # the first two pools are removed
                out = max_pool_ceil(out)
        out = dropout(_flatten_1x1(out, "vgg-att"), HEAD_DROPOUT, site_key(keys, 100))
        global_feature = torch_dense(GLOBAL_WIDTH, GLOBAL_WIDTH, self.dtype, "global")(out)
        return tuple(local), tuple(attended), global_feature

    def _classify(self, descriptors: list[jax.Array], train: bool, keys: jax.Array | None) -> jax.Array:
        """Each g_a -> BN -> ReLU -> Dropout(0.5); 'concat': one Linear; 'indep': a Linear per level, summed."""
        heads = []
        for level, descriptor in zip(self.attention_levels, descriptors):
            head = nn.relu(dense_bn(train, self.dtype, f"head{level}_bn")(descriptor))
            heads.append(dropout(head, HEAD_DROPOUT, site_key(keys, 110 + level)))
        if self.aggregation == "concat":
            joined = jnp.concatenate(heads, axis=-1)
            logits = torch_dense(self.num_classes, joined.shape[-1], self.dtype, "classify")(joined)
            return logits.astype(jnp.float32)
        logits = [torch_dense(self.num_classes, head.shape[-1], self.dtype, f"classify{level}")(head)
                  for level, head in zip(self.attention_levels, heads)]
        return sum(item.astype(jnp.float32) for item in logits)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        keys = DropoutKeys(name="dropout")(train)
        local, attended, global_feature = self._backbone(x, train, keys)
        share = 1.0 / len(self.attention_levels) if self.gradient_averaging else 1.0
        descriptors = []
        for level in self.attention_levels:
            attention, descriptor = LinearAttention(self.compatibility, self.dtype, name=f"attention{level}")(
                attended[level - 1], scale_gradient(global_feature, share), train, site_key(keys, 120 + level))
            self.sow("intermediates", "attention", attention)
            descriptors.append(descriptor)
        return self._classify(descriptors, train, keys), local


def attention_maps(model: nn.Module, variables: Any, x: jax.Array) -> tuple[jax.Array, ...]:
    """The maps a model sows under ``('intermediates', 'attention')`` in inference mode, in level order.

    Returns ``()`` for a model that sows none (e.g. the plain ``vgg``). Each map is (N, H, W).
    """
    _, state = model.apply(variables, x, train=False, mutable=["intermediates"])
    return tuple(state.get("intermediates", {}).get("attention", ()))


@register(r"vgg", "vgg (cifar.torch vgg_bn_drop, LTPA's baseline)")
def _build_vgg(match: re.Match, num_classes: int, **kwargs) -> VGGBNDrop:
    del match
    check_module_kwargs(VGGBNDrop, kwargs, reserved=("num_classes",))
    return VGGBNDrop(num_classes=num_classes, **kwargs)


@register(r"vgg-att([23])-(concat|indep)-(pc|dp)",
          "vgg-att{2,3}-{concat,indep}-{pc,dp} (Learn To Pay Attention, the authors' Torch networks)")
def _build_vgg_attention(match: re.Match, num_classes: int, **kwargs) -> VGGAttention:
    check_module_kwargs(VGGAttention, kwargs,
                        reserved=("num_classes", "attention_levels", "compatibility", "aggregation"))
    levels = (1, 2, 3) if match.group(1) == "3" else (2, 3)
    return VGGAttention(num_classes=num_classes, attention_levels=levels, aggregation=match.group(2),
                        compatibility=match.group(3), **kwargs)

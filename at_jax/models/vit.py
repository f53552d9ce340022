"""Vision Transformer (Dosovitskiy et al. 2021) with DeiT widths (Touvron et al. 2021), as timm builds it.

timm's ``VisionTransformer`` with its defaults (``vit_tiny/small/base_patch16_224``, ``deit_*``)::

    x = patch_embed(image)                      conv P x P / stride P, (B, h, w, D) -> (B, h*w, D)
    x = concat(cls_token, x) + pos_embed        pos_embed: (1, 1 + h*w, D), learned
    x = block_i(x), i = 0 .. depth-1            pre-norm:  x = x + attn(norm1(x));  x = x + mlp(norm2(x))
    logits = head(norm(x)[:, 0])                the class token after the final norm

    attn(x) = proj(concat_heads(softmax(q k^T / sqrt(d_head)) v)),  q, k, v from one fused qkv dense
              reshaped (B, N, 3, heads, d_head) (timm's split order)
    mlp(x)  = fc2(gelu(fc1(x))),  hidden = 4 D,  GELU the exact erf form (PyTorch ``nn.GELU()`` default)

LayerNorm eps 1e-6 everywhere. Widths: ``vit-ti/P`` D=192, 3 heads; ``vit-s/P`` 384, 6; ``vit-b/P``
768, 12; depth 12 (``depth=`` overrides it). Parameter counts with 1000 classes at 224 x 224, P=16:
5,717,416 / 22,050,664 / 86,567,656 (timm's ``vit_tiny_patch16_224`` / ``deit_small_patch16_224`` /
``deit_base_patch16_224``).

Position embeddings. The ``pos_embed`` parameter's length says the grid it was trained for: the grid of
``image_size // P`` when ``image_size`` is given, else the input's grid at init. When an input has
another grid the patch part is resized bilinearly (``F.interpolate(mode='bilinear',
align_corners=False)``, :func:`at_jax.spatial.resize_bilinear`) and the class-token entry kept, as
timm's ``resample_abs_pos_embed`` does (timm's default there is bicubic with antialiasing; bilinear is
used here). Without ``image_size`` a resized grid is assumed square, as timm assumes.

Features for attention transfer: the token outputs ``(B, 1 + h*w, D)`` of the blocks at 1/4, 2/4,
3/4 and 4/4 of the depth (blocks 2, 5, 8, 11 of 12; fewer for depth < 4): like the four stages of a
ResNet or ConvNeXt they sample early, middle and late representations (the layers DPT taps for dense
prediction), so the default pairing (the last features in order) meets a CNN's stages one to one.
``at_jax.attention_map`` drops the class token and lays the patch tokens on their grid.

Parameter paths (flax, '/'-joined) and the timm ``state_dict`` keys they take::

    patch_embed/proj/{kernel,bias}          patch_embed.proj.{weight (D,C,P,P) -> HWIO, bias}
    cls_token, pos_embed                    cls_token, pos_embed        (same shapes)
    block_{i}/norm1/{scale,bias}            blocks.{i}.norm1.{weight,bias}
    block_{i}/attn/qkv/{kernel,bias}        blocks.{i}.attn.qkv.{weight (3D, D) -> transposed, bias}
    block_{i}/attn/proj/{kernel,bias}       blocks.{i}.attn.proj.{weight -> transposed, bias}
    block_{i}/norm2/{scale,bias}            blocks.{i}.norm2.{weight,bias}
    block_{i}/mlp/fc1|fc2/{kernel,bias}     blocks.{i}.mlp.fc1|fc2.{weight -> transposed, bias}
    norm/{scale,bias}                       norm.{weight,bias}
    head/{kernel,bias}                      head.{weight -> transposed, bias}

Init as timm (``weight_init=''``): dense kernels N(0, 0.02^2) (timm's ``trunc_normal_(std=.02)`` cuts
at +-2 absolute, i.e. 100 sigma), dense biases 0, ``pos_embed`` N(0, 0.02^2), ``cls_token``
N(0, 1e-12), the patch conv PyTorch's default U(+-1/sqrt(fan_in)), LayerNorm 1 / 0.
"""
from __future__ import annotations

import re

import flax.linen as nn
import jax
import jax.numpy as jnp

from at_jax.models.layers import (
    Dtype,
    check_module_kwargs,
    dropout,
    is_positive_int,
    torch_linear_bias,
    torch_linear_kernel,
)
from at_jax.models.registry import register
from at_jax.spatial import resize_bilinear

#: name -> (embed_dim, num_heads): DeiT-Ti / S / B.
VIT_WIDTHS: dict[str, tuple[int, int]] = {"ti": (192, 3), "s": (384, 6), "b": (768, 12)}
#: timm's ``trunc_normal_(std=.02)`` (bounds +-2 absolute = +-100 sigma): a plain N(0, 0.02^2).
timm_normal = nn.initializers.normal(0.02)


def gelu(x: jax.Array) -> jax.Array:
    """``x * Phi(x)`` with the exact normal CDF (``torch.nn.GELU()``; flax's default is the tanh form)."""
    return nn.gelu(x, approximate=False)


def layer_norm(dtype: Dtype, name: str) -> nn.LayerNorm:
    """``(x - mean) / sqrt(var + 1e-6) * scale + bias`` over the last axis (two-pass variance, as PyTorch)."""
    return nn.LayerNorm(epsilon=1e-6, use_fast_variance=False, dtype=dtype, param_dtype=jnp.float32,
                        name=name)


def dense(features: int, dtype: Dtype, name: str) -> nn.Dense:
    """A timm ``nn.Linear``: kernel N(0, 0.02^2), bias 0."""
    return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, kernel_init=timm_normal,
                    bias_init=nn.initializers.zeros, name=name)


def dropout_key(module: nn.Module, train: bool, rate: float) -> jax.Array | None:
    """A fresh key of the ``'dropout'`` rng stream when ``train`` and ``rate > 0``, else None."""
    if not train or rate == 0.0:
        return None
    if not module.has_rng("dropout"):
        raise ValueError("train=True with dropout or drop_path needs a 'dropout' rng: "
                         "model.apply(variables, x, train=True, rngs={'dropout': key})")
    return module.make_rng("dropout")


def drop_path(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Stochastic depth (timm ``DropPath``): ``x * m / (1 - rate)``, one m ~ Bernoulli(1 - rate) per example.
    ``key=None`` (inference) returns ``x``."""
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros((), x.dtype))


def linear_rates(rate: float, count: int) -> list[float]:
    """timm's stochastic-depth rule: ``linspace(0, rate, count)``, one rate per block."""
    return [rate * i / (count - 1) if count > 1 else 0.0 for i in range(count)]


class PatchEmbed(nn.Module):
    """``proj``: a P x P conv of stride P (no padding; a remainder is dropped, as PyTorch): (B, H, W, C) ->
    (B, H // P, W // P, D)."""

    patch_size: int
    embed_dim: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or min(x.shape[1:3]) < self.patch_size:
            raise ValueError(f"ViT input must be (B, H, W, C) with H, W >= patch size {self.patch_size}, "
                             f"got shape {x.shape}")
        fan_in = self.patch_size * self.patch_size * x.shape[-1]
        return nn.Conv(self.embed_dim, (self.patch_size,) * 2, strides=(self.patch_size,) * 2,
                       padding="VALID", dtype=self.dtype, param_dtype=jnp.float32,
                       kernel_init=torch_linear_kernel, bias_init=torch_linear_bias(fan_in), name="proj")(x)


class Attention(nn.Module):
    """Multi-head self-attention with timm's fused ``qkv`` (split (B, N, 3, heads, d_head)) and ``proj``;
    ``dropout`` on the projected output (timm's ``proj_drop``). Softmax in float32."""

    num_heads: int
    dropout: float = 0.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        batch, tokens, dim = x.shape
        head_dim = dim // self.num_heads
        qkv = dense(3 * dim, self.dtype, "qkv")(x).reshape(batch, tokens, 3, self.num_heads, head_dim)
        q, k, v = qkv.transpose(2, 0, 3, 1, 4)  # each (B, heads, N, d_head)
        logits = jnp.einsum("bhnd,bhmd->bhnm", q * jnp.asarray(head_dim**-0.5, q.dtype), k)
        weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
        out = jnp.einsum("bhnm,bhmd->bnhd", weights, v).reshape(batch, tokens, dim)
        out = dense(dim, self.dtype, "proj")(out)
        return dropout(out, self.dropout, dropout_key(self, train, self.dropout))


class Mlp(nn.Module):
    """``fc2(gelu(fc1(x)))`` with ``dropout`` after the activation and after ``fc2`` (timm's ``Mlp``)."""

    hidden: int
    dropout: float = 0.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        y = gelu(dense(self.hidden, self.dtype, "fc1")(x))
        y = dropout(y, self.dropout, dropout_key(self, train, self.dropout))
        y = dense(x.shape[-1], self.dtype, "fc2")(y)
        return dropout(y, self.dropout, dropout_key(self, train, self.dropout))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + dp(attn(norm1(x)))`` then ``x + dp(mlp(norm2(x)))`` (dp: drop path)."""

    num_heads: int
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    drop_path: float = 0.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        y = Attention(self.num_heads, self.dropout, self.dtype, name="attn")(layer_norm(self.dtype, "norm1")(x), train)
        x = x + drop_path(y, self.drop_path, dropout_key(self, train, self.drop_path))
        hidden = int(x.shape[-1] * self.mlp_ratio)
        y = Mlp(hidden, self.dropout, self.dtype, name="mlp")(layer_norm(self.dtype, "norm2")(x), train)
        return x + drop_path(y, self.drop_path, dropout_key(self, train, self.drop_path))


def resample_pos_embed(pos_embed: jax.Array, old_grid: tuple[int, int], new_grid: tuple[int, int],
                       prefix_tokens: int = 1) -> jax.Array:
    """(1, prefix + h*w, D) position embeddings for ``new_grid``: the prefix (class token) entries kept,
    the patch entries laid on ``old_grid``, resized bilinearly (half-pixel centres, no antialiasing) and
    flattened row-major again (timm's ``resample_abs_pos_embed`` with ``interpolation='bilinear'``)."""
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    prefix, patches = pos_embed[:, :prefix_tokens], pos_embed[:, prefix_tokens:]
    grid = patches.reshape(1, old_grid[0], old_grid[1], -1).astype(jnp.float32)
    resized = resize_bilinear(grid, new_grid).reshape(1, new_grid[0] * new_grid[1], -1)
    return jnp.concatenate([prefix, resized.astype(pos_embed.dtype)], axis=1)


def feature_block_indices(depth: int) -> tuple[int, ...]:
    """The blocks whose outputs are the AT features: ``ceil(k * depth / 4) - 1`` for k = 1..4, without repeats."""
    return tuple(sorted({(k * depth + 3) // 4 - 1 for k in range(1, 5)}))


def _image_hw(image_size: int | tuple[int, int]) -> tuple[int, ...]:
    """(H, W) of an ``image_size`` given as one int or a pair (any other value gives a tuple that fails the check)."""
    if is_positive_int(image_size):
        return (int(image_size), int(image_size))
    return tuple(image_size) if isinstance(image_size, (tuple, list)) else ()


class VisionTransformer(nn.Module):
    """ViT with a class token and learned position embeddings; ``__call__(x, train)`` with x (B, H, W, C)
    returns ``(logits (B, num_classes) float32, block-output tokens (B, 1 + h*w, D) at the feature indices)``.

    ``image_size`` (int or (H, W)): the input size ``pos_embed`` is created for (default: the init input's).
    ``dropout``: timm's ``pos_drop`` / ``proj_drop`` / MLP dropout rate; ``drop_path``: the stochastic
    depth rate of the last block (linear from 0 over the blocks). Both need a ``'dropout'`` rng in training.
    """

    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int
    num_classes: int = 1000
    mlp_ratio: float = 4.0
    image_size: int | tuple[int, int] | None = None
    dropout: float = 0.0
    drop_path: float = 0.0
    dtype: Dtype = jnp.float32

    def __post_init__(self) -> None:
        for name in ("embed_dim", "depth", "num_heads", "patch_size", "num_classes"):
            if not is_positive_int(getattr(self, name)):
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        size = () if self.image_size is None else _image_hw(self.image_size)
        if self.image_size is not None and (len(size) != 2 or not all(is_positive_int(s) for s in size)):
            raise ValueError(f"image_size must be an integer or (height, width) >= 1, got {self.image_size!r}")
        for name in ("dropout", "drop_path"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        super().__post_init__()

    def _trained_grid(self, num_positions: int, grid: tuple[int, int]) -> tuple[int, int]:
        """The patch grid ``pos_embed`` (1 + num_positions - 1 entries) was made for."""
        if self.image_size is not None:
            height, width = _image_hw(self.image_size)
            trained = (height // self.patch_size, width // self.patch_size)
            if trained[0] * trained[1] + 1 != num_positions:
                raise ValueError(f"pos_embed has {num_positions} entries but image_size={self.image_size} "
                                 f"gives {trained[0] * trained[1] + 1}")
            return trained
        if grid[0] * grid[1] + 1 == num_positions:
            return grid
        side = int(round((num_positions - 1) ** 0.5))
        if side * side != num_positions - 1:
            raise ValueError(f"pos_embed has {num_positions} entries, not 1 + a square grid: "
                             "give image_size= (the size the parameters were created for)")
        return side, side

    def _embed(self, x: jax.Array, train: bool) -> jax.Array:
        """Patch tokens with the class token in front, plus (resampled) position embeddings."""
        patches = PatchEmbed(self.patch_size, self.embed_dim, self.dtype, name="patch_embed")(x)
        batch, grid = patches.shape[0], patches.shape[1:3]
        if self.has_variable("params", "pos_embed"):
            shape = self.get_variable("params", "pos_embed").shape
        else:
            height, width = (grid[0] * self.patch_size, grid[1] * self.patch_size) if self.image_size is None \
                else _image_hw(self.image_size)
            shape = (1, 1 + (height // self.patch_size) * (width // self.patch_size), self.embed_dim)
        pos_embed = self.param("pos_embed", timm_normal, shape, jnp.float32)
        pos_embed = resample_pos_embed(pos_embed, self._trained_grid(shape[1], grid), grid)
        cls_token = self.param("cls_token", nn.initializers.normal(1e-6), (1, 1, self.embed_dim), jnp.float32)
        tokens = jnp.concatenate([jnp.broadcast_to(cls_token, (batch, 1, self.embed_dim)).astype(self.dtype),
                                  patches.reshape(batch, -1, self.embed_dim)], axis=1)
        tokens = tokens + pos_embed.astype(self.dtype)
        return dropout(tokens, self.dropout, dropout_key(self, train, self.dropout))

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        tokens = self._embed(jnp.asarray(x, self.dtype), train)
        taps, features = feature_block_indices(self.depth), []
        for index, rate in enumerate(linear_rates(self.drop_path, self.depth)):
            tokens = Block(self.num_heads, self.mlp_ratio, self.dropout, rate, self.dtype,
                           name=f"block_{index}")(tokens, train)
            if index in taps:
                features.append(tokens)
        pooled = layer_norm(self.dtype, "norm")(tokens)[:, 0]
        logits = dense(self.num_classes, self.dtype, "head")(pooled)
        return logits.astype(jnp.float32), tuple(features)


@register(r"vit-(ti|s|b)/(\d+)",
          "vit-ti/P, vit-s/P, vit-b/P (DeiT-Ti/S/B, patch size P; options depth=, image_size=, dropout=, drop_path=, "
          "and embed_dim=, num_heads= for a narrower or wider network than the name's)")
def _build_vit(match: re.Match, num_classes: int, **kwargs) -> VisionTransformer:
    check_module_kwargs(VisionTransformer, kwargs, reserved=("patch_size", "num_classes"))
    embed_dim, num_heads = VIT_WIDTHS[match.group(1)]
    kwargs.setdefault("embed_dim", embed_dim)
    kwargs.setdefault("num_heads", num_heads)
    kwargs.setdefault("depth", 12)
    return VisionTransformer(patch_size=int(match.group(2)), num_classes=num_classes, **kwargs)

"""ViT and ConvNeXt in the zoo: timm's definitions (numpy forward on timm-keyed weights), names, counts, pos-embed resizing."""
from __future__ import annotations

import math
import re
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from at_jax.attention import attention_map
from at_jax.models import create
from at_jax.models.convnext import ConvNeXt, ConvNeXtStage
from at_jax.models.vit import VisionTransformer, drop_path, feature_block_indices, resample_pos_embed
from model_utils import count_params, numpy_variables

_erf = np.vectorize(math.erf)


# ---------------------------------------------------------------- timm state dicts -> flax, as the docstrings map them
def flax_path(key: str) -> tuple[str, ...]:
    """The flax module path of a timm key's module (ViT and ConvNeXt tables of the module docstrings)."""
    key = re.sub(r"^blocks\.(\d+)\.", r"block_\1.", key)                          # ViT blocks
    key = re.sub(r"^(stem|head)\.(\d+|norm|fc)\b", r"\1_\2", key)                # stem.0, head.norm, head.fc
    key = re.sub(r"stages\.(\d+)\.(downsample|blocks)\.(\d+)", r"stages_\1.\2_\3", key)
    key = key.replace(".mlp.fc", ".mlp_fc") if key.startswith("stages_") else key
    return tuple(key.split("."))


def timm_to_flax(state: dict[str, np.ndarray]) -> dict:
    """Key by key: weight -> kernel (OIHW -> HWIO; (out, in[, 1, 1]) -> (in, out)) or scale (1-D); others as is."""
    params: dict = {}
    for key, value in state.items():
        *modules, leaf = flax_path(key)
        if leaf == "weight" and value.ndim == 1:
            leaf = "scale"
        elif leaf == "weight" and (value.ndim == 2 or value.shape[2:] == (1, 1) and "mlp_fc" in modules[-1]):
            leaf, value = "kernel", value.reshape(value.shape[:2]).T
        elif leaf == "weight":
            leaf, value = "kernel", value.transpose(2, 3, 1, 0)
        node = params
        for name in modules:
            node = node.setdefault(name, {})
        node[leaf] = jnp.asarray(value)
    return {"params": params}


def random_state(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("weight") and len(shape) == 1:  # norms
            state[key] = 1.0 + 0.2 * rng.normal(size=shape)
        elif key.endswith("weight"):
            state[key] = rng.normal(size=shape) / np.sqrt(np.prod(shape[1:]))
        else:
            state[key] = (0.5 if key.endswith("gamma") else 0.2) * rng.normal(size=shape)
    return {key: value.astype(np.float32) for key, value in state.items()}


# ---------------------------------------------------------------- numpy forwards written from timm's code (NCHW)
def np_layer_norm(x, state, key, axis=-1):
    x = np.moveaxis(x, axis, -1)
    mean = x.mean(-1, keepdims=True)
    y = (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + 1e-6)
    return np.moveaxis(y * state[key + ".weight"] + state[key + ".bias"], -1, axis)


def np_linear(x, state, key):
    weight = state[key + ".weight"]
    return x @ weight.reshape(weight.shape[:2]).T + state[key + ".bias"]


def np_gelu(x):
    return 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))


def np_vit(state, image, num_heads, depth):
    """timm VisionTransformer.forward (class token, learned pos_embed, pre-norm blocks, head on the class token)."""
    weight = state["patch_embed.proj.weight"].astype(np.float64)
    dim, channels, patch, _ = weight.shape
    batch, h, w = image.shape[0], image.shape[2] // patch, image.shape[3] // patch
    patches = image[:, :, :h * patch, :w * patch].reshape(batch, channels, h, patch, w, patch)
    x = np.einsum("bchpwq,dcpq->bhwd", patches, weight).reshape(batch, h * w, dim) + state["patch_embed.proj.bias"]
    x = np.concatenate([np.broadcast_to(state["cls_token"], (batch, 1, dim)), x], axis=1) + state["pos_embed"]
    features, head_dim = [], dim // num_heads
    for i in range(depth):
        prefix = f"blocks.{i}."
        qkv = np_linear(np_layer_norm(x, state, prefix + "norm1"), state, prefix + "attn.qkv")
        q, k, v = qkv.reshape(batch, -1, 3, num_heads, head_dim).transpose(2, 0, 3, 1, 4)
        logits = (q * head_dim**-0.5) @ k.swapaxes(-1, -2)
        attn = np.exp(logits - logits.max(-1, keepdims=True))
        attn /= attn.sum(-1, keepdims=True)
        out = (attn @ v).transpose(0, 2, 1, 3).reshape(batch, -1, dim)
        x = x + np_linear(out, state, prefix + "attn.proj")
        hidden = np_gelu(np_linear(np_layer_norm(x, state, prefix + "norm2"), state, prefix + "mlp.fc1"))
        x = x + np_linear(hidden, state, prefix + "mlp.fc2")
        features.append(x)
    return np_linear(np_layer_norm(x, state, "norm")[:, 0], state, "head"), features


def np_conv(x, weight, bias, stride, pad, groups=1):
    """PyTorch conv2d (NCHW, OIHW weight) for groups 1 or depthwise (groups = channels)."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out_c, _, k, _ = weight.shape
    out_h, out_w = (x.shape[2] - k) // stride + 1, (x.shape[3] - k) // stride + 1
    out = np.zeros((x.shape[0], out_c, out_h, out_w))
    for p in range(k):
        for q in range(k):
            window = x[:, :, p:p + stride * out_h:stride, q:q + stride * out_w:stride]
            out += window * weight[None, :, 0, p, q, None, None] if groups > 1 else np.einsum(
                "bchw,oc->bohw", window, weight[:, :, p, q])
    return out + bias[None, :, None, None]


def np_convnext(state, image, depths):
    """timm ConvNeXt.forward with conv_mlp=True (atto): LayerNorm2d, 1x1-conv MLP, layer scale, NormMlp head."""
    x = np_layer_norm(np_conv(image, state["stem.0.weight"], state["stem.0.bias"], 4, 0), state, "stem.1", axis=1)
    features = []
    for i, depth in enumerate(depths):
        if i > 0:
            x = np_layer_norm(x, state, f"stages.{i}.downsample.0", axis=1)
            x = np_conv(x, state[f"stages.{i}.downsample.1.weight"], state[f"stages.{i}.downsample.1.bias"], 2, 0)
        for j in range(depth):
            p = f"stages.{i}.blocks.{j}."
            y = np_conv(x, state[p + "conv_dw.weight"], state[p + "conv_dw.bias"], 1, 3, groups=x.shape[1])
            y = np.moveaxis(np_layer_norm(y, state, p + "norm", axis=1), 1, -1)
            y = np_linear(np_gelu(np_linear(y, state, p + "mlp.fc1")), state, p + "mlp.fc2")
            x = x + np.moveaxis(y, -1, 1) * state[p + "gamma"][None, :, None, None]
        features.append(x.transpose(0, 2, 3, 1))
    pooled = np_layer_norm(x.mean(axis=(2, 3)), state, "head.norm")
    return np_linear(pooled, state, "head.fc"), features


def vit_state_shapes(dim, depth, heads, patch, grid, classes, channels=3):
    shapes = {"cls_token": (1, 1, dim), "pos_embed": (1, 1 + grid[0] * grid[1], dim),
              "patch_embed.proj.weight": (dim, channels, patch, patch), "patch_embed.proj.bias": (dim,),
              "norm.weight": (dim,), "norm.bias": (dim,), "head.weight": (classes, dim), "head.bias": (classes,)}
    for i in range(depth):
        for name, shape in {"norm1": (dim,), "norm2": (dim,), "attn.qkv": (3 * dim, dim), "attn.proj": (dim, dim),
                            "mlp.fc1": (4 * dim, dim), "mlp.fc2": (dim, 4 * dim)}.items():
            shapes[f"blocks.{i}.{name}.weight"], shapes[f"blocks.{i}.{name}.bias"] = shape, shape[:1]
    return shapes


def convnext_state_shapes(depths, dims, classes, channels=3):
    shapes = {"stem.0.weight": (dims[0], channels, 4, 4), "stem.0.bias": (dims[0],), "stem.1.weight": (dims[0],),
              "stem.1.bias": (dims[0],), "head.norm.weight": (dims[-1],), "head.norm.bias": (dims[-1],),
              "head.fc.weight": (classes, dims[-1]), "head.fc.bias": (classes,)}
    for i, (depth, dim) in enumerate(zip(depths, dims)):
        if i > 0:
            shapes.update({f"stages.{i}.downsample.0.weight": (dims[i - 1],), f"stages.{i}.downsample.0.bias": (dims[i - 1],),
                           f"stages.{i}.downsample.1.weight": (dim, dims[i - 1], 2, 2), f"stages.{i}.downsample.1.bias": (dim,)})
        for j in range(depth):
            p = f"stages.{i}.blocks.{j}."
            shapes.update({p + "conv_dw.weight": (dim, 1, 7, 7), p + "conv_dw.bias": (dim,), p + "norm.weight": (dim,),
                           p + "norm.bias": (dim,), p + "mlp.fc1.weight": (4 * dim, dim, 1, 1), p + "mlp.fc1.bias": (4 * dim,),
                           p + "mlp.fc2.weight": (dim, 4 * dim, 1, 1), p + "mlp.fc2.bias": (dim,), p + "gamma": (dim,)})
    return shapes


def assert_same_tree_shapes(variables, model, x):
    expected = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    shapes = lambda tree: jax.tree.map(lambda leaf: tuple(leaf.shape), tree)  # noqa: E731
    assert shapes(variables) == shapes(expected)


def test_vit_matches_timm_forward_on_timm_keyed_weights():
    """Every timm key maps onto exactly one flax parameter, and the forward is timm's (qkv split, erf GELU, eps)."""
    model = VisionTransformer(embed_dim=12, depth=2, num_heads=3, patch_size=4, num_classes=5)
    image = np.random.default_rng(1).normal(size=(2, 14, 13, 3)).astype(np.float32)  # remainders dropped: 3 x 3 grid
    state = random_state(vit_state_shapes(12, 2, 3, 4, (3, 3), 5), seed=2)
    variables = timm_to_flax(state)
    assert_same_tree_shapes(variables, model, jnp.asarray(image))
    logits, features = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, jnp.asarray(image))
    expected_logits, expected_features = np_vit(state, image.transpose(0, 3, 1, 2).astype(np.float64), 3, 2)
    np.testing.assert_allclose(logits, expected_logits, rtol=1e-4, atol=1e-5)
    assert len(features) == 2
    for feature, expected in zip(features, expected_features):
        np.testing.assert_allclose(feature, expected, rtol=1e-4, atol=1e-5)


def test_convnext_matches_timm_forward_on_timm_keyed_weights():
    model = ConvNeXt(depths=(1, 1, 2, 1), dims=(4, 8, 12, 16), num_classes=5)
    image = np.random.default_rng(3).normal(size=(2, 32, 32, 3)).astype(np.float32)
    state = random_state(convnext_state_shapes((1, 1, 2, 1), (4, 8, 12, 16), 5), seed=4)
    variables = timm_to_flax(state)
    assert_same_tree_shapes(variables, model, jnp.asarray(image))
    logits, features = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, jnp.asarray(image))
    expected_logits, expected_features = np_convnext(state, image.transpose(0, 3, 1, 2).astype(np.float64), (1, 1, 2, 1))
    np.testing.assert_allclose(logits, expected_logits, rtol=1e-4, atol=1e-5)
    assert [f.shape[1:] for f in features] == [(8, 8, 4), (4, 4, 8), (2, 2, 12), (1, 1, 16)]
    for feature, expected in zip(features, expected_features):
        np.testing.assert_allclose(feature, expected, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- names, shapes, counts
@pytest.mark.parametrize(
    "name, kwargs, size, feature_shapes",
    [
        ("vit-ti/4", {"depth": 2}, 32, [(65, 192)] * 2),
        ("vit-s/8", {"depth": 3}, 32, [(17, 384)] * 3),
        ("vit-b/16", {}, 32, [(5, 768)] * 4),
        ("vit-ti/4", {"depth": 4}, 40, [(101, 192)] * 4),
        ("convnext-atto", {}, 32, [(8, 8, 40), (4, 4, 80), (2, 2, 160), (1, 1, 320)]),
        ("convnext-tiny", {}, 64, [(16, 16, 96), (8, 8, 192), (4, 4, 384), (2, 2, 768)]),
    ],
)
def test_output_and_feature_shapes(name, kwargs, size, feature_shapes):
    model = create(name, 7, **kwargs)
    x = jnp.zeros((2, size, size, 3))
    (logits, features), _ = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), x, train=False))
    assert logits.shape == (2, 7) and logits.dtype == jnp.float32
    assert [tuple(f.shape[1:]) for f in features] == feature_shapes and all(f.shape[0] == 2 for f in features)


def test_feature_blocks_are_the_depth_quarters():
    assert feature_block_indices(12) == (2, 5, 8, 11)
    assert feature_block_indices(6) == (1, 2, 4, 5)
    assert [feature_block_indices(d) for d in (1, 2, 3, 4)] == [(0,), (0, 1), (0, 1, 2), (0, 1, 2, 3)]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("vit-ti/16", 5_717_416),    # timm vit_tiny_patch16_224 (= deit_tiny_patch16_224)
        ("vit-s/16", 22_050_664),    # timm deit_small_patch16_224 / vit_small_patch16_224
        ("vit-b/16", 86_567_656),    # timm deit_base_patch16_224 / vit_base_patch16_224
        ("convnext-atto", 3_695_520),  # timm convnext_atto (README 3.7M; convnextv2_atto is 3,708,400)
        ("convnext-tiny", 28_589_128),  # timm convnext_tiny
    ],
)
def test_parameter_counts_equal_timm(name, expected):
    assert count_params(create(name, 1000), size=224) == expected


def test_initialisers_follow_timm():
    vit = VisionTransformer(embed_dim=64, depth=1, num_heads=2, patch_size=4, num_classes=10)
    stage = ConvNeXtStage(dim=64, drop_path_rates=(0.0,))  # downsample_0/1 and blocks_0
    init = jax.jit(lambda key: (vit.init(key, jnp.zeros((1, 8, 8, 3)), train=False)["params"],
                                stage.init(key, jnp.zeros((1, 4, 4, 32)), train=False)["params"]))
    vit_params, stage_params = init(jax.random.key(0, impl="unsafe_rbg"))  # compiles 3x faster than threefry
    for kernel in (vit_params["block_0"]["attn"]["qkv"]["kernel"], vit_params["block_0"]["mlp"]["fc1"]["kernel"],
                   vit_params["pos_embed"], stage_params["blocks_0"]["mlp_fc1"]["kernel"],
                   stage_params["blocks_0"]["conv_dw"]["kernel"], stage_params["downsample_1"]["kernel"]):
        assert abs(float(jnp.std(kernel)) / 0.02 - 1.0) < 0.15
    assert float(jnp.max(jnp.abs(vit_params["cls_token"]))) < 1e-5
    patch_kernel = vit_params["patch_embed"]["proj"]["kernel"]  # PyTorch conv default: U(+-1/sqrt(48))
    assert float(jnp.max(jnp.abs(patch_kernel))) <= 1 / np.sqrt(48) and float(jnp.std(patch_kernel)) > 0.5 / np.sqrt(3 * 48)
    assert not np.any(vit_params["block_0"]["attn"]["proj"]["bias"]) and np.all(vit_params["norm"]["scale"] == 1.0)
    np.testing.assert_array_equal(stage_params["blocks_0"]["gamma"], np.float32(1e-6))
    assert not np.any(stage_params["downsample_1"]["bias"]) and np.all(stage_params["downsample_0"]["scale"] == 1.0)


# ---------------------------------------------------------------- position embeddings
def numpy_bilinear_matrix(size_in: int, size_out: int) -> np.ndarray:
    """F.interpolate(mode='bilinear', align_corners=False) weights along one axis."""
    weights = np.zeros((size_out, size_in))
    for i in range(size_out):
        source = max((i + 0.5) * size_in / size_out - 0.5, 0.0)
        low = int(source)
        high, frac = min(low + 1, size_in - 1), source - low
        weights[i, low] += 1.0 - frac
        weights[i, high] += frac
    return weights


def test_pos_embed_resized_for_another_input_size():
    """Initialised at 32 x 32 (8 x 8 grid), applied at 48 x 48: the same as applying with pos_embed resized
    beforehand, the class entry kept and the grid interpolated bilinearly."""
    model = VisionTransformer(embed_dim=16, depth=1, num_heads=2, patch_size=4, num_classes=10)
    x32, x48 = (jnp.asarray(np.random.default_rng(5).normal(size=(2, s, s, 3)), jnp.float32) for s in (32, 48))
    variables = numpy_variables(model, x32)
    pos_embed = np.asarray(variables["params"]["pos_embed"], np.float64)
    assert pos_embed.shape == (1, 65, 16)
    rows = numpy_bilinear_matrix(8, 12)
    grid = np.einsum("ih,jw,hwd->ijd", rows, rows, pos_embed[0, 1:].reshape(8, 8, 16)).reshape(1, 144, 16)
    resized = np.concatenate([pos_embed[:, :1], grid], axis=1)
    np.testing.assert_allclose(resample_pos_embed(jnp.asarray(pos_embed, jnp.float32), (8, 8), (12, 12)), resized,
                               rtol=1e-5, atol=1e-6)
    explicit = {"params": {**variables["params"], "pos_embed": jnp.asarray(resized, jnp.float32)}}
    apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
    (logits, features), (expected_logits, expected_features) = apply(variables, x48), apply(explicit, x48)
    assert features[0].shape == (2, 145, 16)
    np.testing.assert_allclose(logits, expected_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(features[0], expected_features[0], rtol=1e-5, atol=1e-5)


def test_image_size_fixes_the_pos_embed_grid():
    model = create("vit-ti/4", 10, depth=1, image_size=32)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 48, 40, 3)), train=False))
    assert shapes["params"]["pos_embed"].shape == (1, 65, 192)  # made for 32 x 32, whatever the init input
    non_square = create("vit-ti/4", 10, depth=1)  # created for a 8 x 12 grid: 97 entries
    variables = jax.eval_shape(lambda: non_square.init(jax.random.key(0), jnp.zeros((1, 32, 48, 3)), train=False))
    assert variables["params"]["pos_embed"].shape == (1, 97, 192)
    with pytest.raises(ValueError, match="give image_size"):
        jax.eval_shape(lambda v: non_square.apply(v, jnp.zeros((1, 32, 32, 3)), train=False), variables)
    with pytest.raises(ValueError, match="image_size=40 gives 101"):
        jax.eval_shape(lambda v: create("vit-ti/4", 10, depth=1, image_size=40).apply(
            v, jnp.zeros((1, 32, 32, 3)), train=False), variables)


# ---------------------------------------------------------------- train / eval, dtypes, speed, errors
SMALL_VIT = dict(embed_dim=16, depth=2, num_heads=2, patch_size=4, num_classes=10)
SMALL_CONVNEXT = dict(depths=(1, 1, 1, 1), dims=(8, 8, 16, 16), num_classes=10)


@pytest.mark.parametrize("module, options, size", [(VisionTransformer, SMALL_VIT, 8), (ConvNeXt, SMALL_CONVNEXT, 32)])
def test_train_and_eval_paths(module, options, size):
    """Without dropout / drop path (and no BN) train == eval; with them train draws from the 'dropout' rng."""
    x = jnp.asarray(np.random.default_rng(6).normal(size=(4, size, size, 3)), jnp.float32)
    plain, noisy = module(**options), module(**options, drop_path=0.3, dropout=0.2)
    variables = numpy_variables(plain, x)

    @jax.jit
    def forward(keys):
        def logits(model, train, key):
            return model.apply(variables, x, train=train, rngs={"dropout": key})[0]
        return (logits(plain, False, keys[0]), logits(plain, True, keys[0]), logits(noisy, False, keys[0]),
                logits(noisy, True, keys[1]), logits(noisy, True, keys[2]))

    keys = jnp.stack([jax.random.key_data(jax.random.key(seed)) for seed in (0, 1, 2)])
    eval_logits, plain_train, noisy_eval, train_a, train_b = forward(jax.random.wrap_key_data(keys))
    np.testing.assert_allclose(plain_train, eval_logits, rtol=1e-6)
    np.testing.assert_allclose(noisy_eval, eval_logits, rtol=1e-6)  # inference: identity
    assert not np.allclose(train_a, eval_logits) and not np.allclose(train_a, train_b)  # the key decides the masks
    with pytest.raises(ValueError, match="'dropout' rng"):
        jax.eval_shape(lambda v: noisy.apply(v, x, train=True), variables)


def test_drop_path_drops_whole_examples():
    out = np.asarray(drop_path(jnp.ones((64, 3, 2)), 0.5, jax.random.key(0)))
    per_example = out.reshape(64, -1)
    assert set(np.unique(per_example)) <= {0.0, 2.0} and np.all(per_example.min(1) == per_example.max(1))
    assert 10 < np.count_nonzero(per_example[:, 0]) < 54


@pytest.mark.parametrize("module, options", [(VisionTransformer, SMALL_VIT), (ConvNeXt, SMALL_CONVNEXT)])
def test_bfloat16_forward_close_to_float32(module, options):
    x = jnp.asarray(np.random.default_rng(7).normal(size=(2, 32, 32, 3)), jnp.float32)
    model32, model16 = module(**options), module(**options, dtype=jnp.bfloat16)
    variables = numpy_variables(model32, x)
    both = jax.jit(lambda v: (model32.apply(v, x, train=False)[0], model16.apply(v, x, train=False)))
    logits32, (logits16, features16) = both(variables)
    assert logits16.dtype == jnp.float32 and all(f.dtype == jnp.bfloat16 for f in features16)
    assert float(jnp.linalg.norm(logits16 - logits32) / jnp.linalg.norm(logits32)) < 5e-2


def test_vit_ti_4_forward_is_fast_and_its_tokens_give_maps():
    model = create("vit-ti/4", num_classes=10, depth=4)
    x = jnp.asarray(np.random.default_rng(8).normal(size=(8, 40, 40, 3)), jnp.float32)
    variables = numpy_variables(model, x)
    forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
    jax.block_until_ready(forward(variables, x))
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        logits, features = jax.block_until_ready(forward(variables, x))
        timings.append(time.perf_counter() - start)
    assert min(timings) < 0.5, timings
    assert logits.shape == (8, 10) and np.all(np.isfinite(logits))
    maps = attention_map(features[-1])
    assert maps.shape == (8, 100)
    np.testing.assert_array_equal(maps, attention_map(features[-1][:, 1:].reshape(8, 10, 10, 192)))


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("vit-x/4", {}, r"(?=.*unknown model)(?=.*vit-ti/P)(?=.*convnext-atto)"),
        ("vit-ti", {}, r"unknown model"),
        ("convnext-small", {}, r"unknown model"),
        ("vit-ti/0", {}, r"patch_size must be an integer >= 1"),
        ("vit-ti/4", {"num_heads": 5}, r"embed_dim 192 is not divisible by num_heads 5"),
        ("vit-ti/4", {"patch_size": 8}, r"patch_size"),
        ("vit-ti/4", {"depth": 0}, r"depth must be an integer >= 1"),
        ("vit-s/4", {"image_size": (32, 0)}, r"image_size"),
        ("vit-s/4", {"image_size": 0}, r"image_size must be an integer or \(height, width\)"),
        ("vit-b/4", {"drop_path": 1.0}, r"drop_path must be in \[0, 1\)"),
        ("convnext-atto", {"dims": (8, 8, 8, 8)}, r"unknown option.*dims"),
        ("convnext-tiny", {"dropout": -0.1}, r"dropout must be in"),
    ],
)
def test_invalid_names_and_options_raise_value_error(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        create(name, 10, **kwargs)


@pytest.mark.parametrize("name, size, message", [("vit-s/8", 4, r"H, W >= patch size 8"),
                                                 ("convnext-atto", 16, r"H, W >= 32")])
def test_too_small_inputs_raise_value_error(name, size, message):
    model = create(name, 10)
    with pytest.raises(ValueError, match=message):
        jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False))


def test_a_narrower_vit_by_options():
    """``embed_dim`` and ``num_heads`` override the name's width (configs/experiments/cnn_and_vit.py's small ViT)."""
    model = create("vit-ti/5", 10, depth=4, embed_dim=64, num_heads=2)
    assert (model.embed_dim, model.num_heads, model.depth, model.patch_size) == (64, 2, 4, 5)
    assert create("vit-ti/5", 10).embed_dim == 192

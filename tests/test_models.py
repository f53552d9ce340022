"""Tests of the model zoo: WRN against the official PyTorch code, parameter counts, shapes, dtypes, jit."""
from __future__ import annotations

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import at_jax.models.nin  # noqa: F401  (registers nin-*)
import at_jax.models.resnet  # noqa: F401  (registers resnet*)
import at_jax.models.wrn  # noqa: F401  (registers wrn-D-K)
from at_jax.models import create
from at_jax.models.layers import BatchNorm
from at_jax.models.resnet import ResidualBlock
from at_jax.models.wrn import WideBasicBlock, WideResNet, variables_from_official

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "wrn.npz")


def count_params(name: str, num_classes: int, size: int, **kwargs) -> int:
    model = create(name, num_classes, **kwargs)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False))
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes["params"]))


def numpy_variables(model: nn.Module, x: jax.Array, seed: int = 0) -> dict:
    """Random variables for ``model`` drawn with numpy (jax.random init compiles slowly on CPU).

    Kernels ~ N(0, 2 / fan_in), BN scale ~ U(0.5, 1), running mean ~ N(0, 0.1^2), running var
    ~ U(0.5, 1.5); every other leaf (biases, gates) is 0.
    """
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name, shape = path[-1].key, leaf.shape
        if name == "kernel":
            return rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[:-1])), shape).astype(np.float32)
        if name == "scale":
            return rng.uniform(0.5, 1.0, shape).astype(np.float32)
        if name == "mean":
            return rng.normal(0.0, 0.1, shape).astype(np.float32)
        if name == "var":
            return rng.uniform(0.5, 1.5, shape).astype(np.float32)
        return np.zeros(shape, np.float32)

    return jax.tree_util.tree_map_with_path(fill, shapes)


# ---------------------------------------------------------------- official WRN fixture
@pytest.fixture(scope="module")
def official_wrn():
    data = np.load(FIXTURE)
    state = {key[len("state/"):]: data[key] for key in data.files if key.startswith("state/")}
    return data, variables_from_official(state)


def test_official_state_maps_onto_flax_variables(official_wrn):
    _, variables = official_wrn
    model = WideResNet(depth=10, width=1, num_classes=10)
    expected = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))
    shapes = lambda tree: jax.tree.map(lambda leaf: leaf.shape, tree)  # noqa: E731
    assert shapes(variables) == shapes(expected)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_wrn_matches_official_pytorch(official_wrn, mode):
    data, variables = official_wrn
    model = WideResNet(depth=10, width=1, num_classes=10)
    image = jnp.asarray(data["input"], jnp.float32)
    if mode == "eval":
        logits, features = model.apply(variables, image, train=False)
    else:
        (logits, features), updated = model.apply(variables, image, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(logits, data[f"{mode}/logits"], rtol=1e-4, atol=1e-4)
    assert len(features) == 3
    for index, feature in enumerate(features):
        np.testing.assert_allclose(feature, data[f"{mode}/group{index}"], rtol=1e-4, atol=1e-4)
    if mode == "train":  # running stats after one step, PyTorch momentum 0.1 and unbiased variance
        torch_stats = {k[len("train/stats/"):]: data[k] for k in data.files if k.startswith("train/stats/")}
        expected = variables_from_official(torch_stats)["batch_stats"]
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                     updated["batch_stats"], expected)
        assert not np.allclose(expected["bn"]["var"], variables["batch_stats"]["bn"]["var"])


def test_batch_norm_running_variance_is_unbiased():
    x = jnp.asarray(np.random.default_rng(0).normal(1.0, 2.0, size=(2, 3, 3, 4)), jnp.float32)
    bn = BatchNorm(use_running_average=False, momentum=0.9)
    variables = {"params": {"scale": jnp.ones(4), "bias": jnp.zeros(4)},
                 "batch_stats": {"mean": jnp.zeros(4), "var": jnp.ones(4)}}
    y, updated = bn.apply(variables, x, mutable=["batch_stats"])
    flat = np.asarray(x).reshape(-1, 4)
    np.testing.assert_allclose(updated["batch_stats"]["mean"], 0.1 * flat.mean(0), rtol=1e-5)
    np.testing.assert_allclose(updated["batch_stats"]["var"], 0.9 + 0.1 * flat.var(0, ddof=1), rtol=1e-5)
    np.testing.assert_allclose(y, ((flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5)).reshape(x.shape),
                               rtol=1e-4, atol=1e-5)


def test_batch_norm_counts_past_int32():
    """A pod's global batch puts more than 2**31 elements per channel through ImageNet's first BN (a v5p
    --find-max-batch probe, BENCHMARKS.md); traced from shapes alone, as compile_for does, it does not overflow."""
    bn = BatchNorm(use_running_average=False, momentum=0.9)
    variables = {"params": {"scale": jnp.ones(1), "bias": jnp.zeros(1)},
                 "batch_stats": {"mean": jnp.zeros(1), "var": jnp.ones(1)}}
    huge = jax.ShapeDtypeStruct((2 ** 17, 2 ** 7, 2 ** 7, 1), jnp.bfloat16)      # 2**31 elements
    out, updated = jax.eval_shape(lambda x: bn.apply(variables, x, mutable=["batch_stats"]), huge)
    assert out.shape == huge.shape and updated["batch_stats"]["var"].shape == (1,)


def test_initialisers_follow_official_and_torchvision_code():
    x = jnp.zeros((1, 4, 4, 16))
    wrn_block = WideBasicBlock(out_channels=32, stride=2)
    resnet_block = ResidualBlock(width=32, stride=2, kind="basic", zero_init_residual=True)
    init_both = jax.jit(lambda key: (wrn_block.init(key, x, train=False)["params"],
                                     resnet_block.init(key, x, train=False)["params"]))
    wrn_params, resnet_params = init_both(jax.random.key(0))
    # WRN: kaiming normal fan-in, BN scale U(0, 1), BN bias 0
    kernel = np.asarray(wrn_params["conv1"]["kernel"])  # (3, 3, 32, 32): fan_in 288
    assert abs(kernel.std() / np.sqrt(2.0 / 288) - 1.0) < 0.05
    scale = np.concatenate([wrn_params["bn0"]["scale"], wrn_params["bn1"]["scale"]])
    assert scale.min() >= 0.0 and scale.max() < 1.0 and 0.3 < scale.mean() < 0.7
    assert not np.any(wrn_params["bn1"]["bias"])
    assert "convdim" in wrn_params
    # torchvision: kaiming normal fan-out, BN scale 1, last BN of the block 0 with zero_init_residual
    kernel = np.asarray(resnet_params["conv2"]["kernel"])  # (3, 3, 32, 32): fan_out 288
    assert abs(kernel.std() / np.sqrt(2.0 / 288) - 1.0) < 0.05
    kernel = np.asarray(resnet_params["downsample_conv"]["kernel"])  # (1, 1, 16, 32): fan_out 32
    assert abs(kernel.std() / np.sqrt(2.0 / 32) - 1.0) < 0.25
    np.testing.assert_array_equal(resnet_params["bn1"]["scale"], 1.0)
    np.testing.assert_array_equal(resnet_params["bn2"]["scale"], 0.0)


# ---------------------------------------------------------------- parameter counts
@pytest.mark.parametrize(
    "name, num_classes, size, expected, tolerance",
    [
        ("wrn-16-1", 10, 32, 175_066, 0.0),  # AT paper: 0.2M (0.175M)
        ("wrn-16-2", 10, 32, 691_674, 0.0),  # 0.69M
        ("wrn-40-1", 10, 32, 563_930, 0.0),  # 0.56M
        ("wrn-40-2", 10, 32, 2_243_546, 0.0),  # 2.2M
        ("wrn-28-10", 10, 32, 36_479_194, 0.0),  # 36.5M (WRN paper)
        ("resnet18", 1000, 64, 11_689_512, 0.0),  # torchvision
        ("resnet34", 1000, 64, 21_797_672, 0.0),
        ("resnet50", 1000, 64, 25_557_032, 0.0),
        ("nin-wide", 10, 32, 1_005_642, 0.0),  # wide-residual-networks nin.lua, "1M" in the AT paper
        ("nin-wide", 100, 32, 1_023_012, 0.0),
        ("nin-thin", 10, 32, 200_138, 0.0),  # the AT paper's 0.2M NIN (widths chosen here)
        ("nin-thin", 100, 32, 207_428, 0.0),
        ("nin-thin-nobn", 10, 32, 199_434, 0.0),  # biases instead of BN
        ("nin-wide-nobn", 10, 32, 1_004_042, 0.0),
    ],
)
def test_parameter_counts(name, num_classes, size, expected, tolerance):
    count = count_params(name, num_classes, size)
    assert abs(count - expected) <= tolerance * expected, (name, count)


# ---------------------------------------------------------------- shapes, names, errors
@pytest.mark.parametrize(
    "name, kwargs, size, feature_shapes",
    [
        ("wrn-10-1", {}, 32, [(32, 32, 16), (16, 16, 32), (8, 8, 64)]),
        ("wrn-16-2", {}, 32, [(32, 32, 32), (16, 16, 64), (8, 8, 128)]),
        ("nin-thin", {}, 32, [(32, 32, 48), (16, 16, 80), (8, 8, 80)]),
        ("nin-wide-nobn", {"relu_before_pool": False}, 32, [(32, 32, 96), (16, 16, 192), (8, 8, 192)]),
        ("resnet18", {}, 64, [(16, 16, 64), (8, 8, 128), (4, 4, 256), (2, 2, 512)]),
        ("resnet34", {"stem": "cifar"}, 32, [(32, 32, 64), (16, 16, 128), (8, 8, 256), (4, 4, 512)]),
        ("resnet50", {}, 64, [(16, 16, 256), (8, 8, 512), (4, 4, 1024), (2, 2, 2048)]),
    ],
)
def test_output_and_feature_shapes(name, kwargs, size, feature_shapes):
    model = create(name, 7, **kwargs)
    x = jnp.zeros((2, size, size, 3))
    (logits, features), _ = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), x, train=False))
    assert logits.shape == (2, 7) and logits.dtype == jnp.float32
    assert [tuple(f.shape[1:]) for f in features] == feature_shapes
    assert all(f.shape[0] == 2 for f in features)


def test_nin_batch_norm_switch():
    def variable_names(model):
        shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))
        return shapes.keys(), list(shapes["params"])

    collections, modules = variable_names(create("nin-thin", 10))
    assert "batch_stats" in collections and "block1_1_bn" in modules
    for model in (create("nin-thin-nobn", 10), create("nin-thin", 10, batch_norm=False)):
        collections, modules = variable_names(model)
        assert "batch_stats" not in collections and not any(m.endswith("_bn") for m in modules)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_nin_relu_before_pool_switch(batch_norm):
    """relu_before_pool=False drops exactly the ReLU on each block's last conv (before the three pools); the
    block outputs are then the raw conv (+ BN) outputs and take negative values."""
    x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 32, 32, 3)), jnp.float32)
    with_relu = create("nin-thin", 10, batch_norm=batch_norm)
    without = create("nin-thin", 10, batch_norm=batch_norm, relu_before_pool=False)
    variables = numpy_variables(with_relu, x)
    _, features = with_relu.apply(variables, x, train=False)
    _, raw = without.apply(variables, x, train=False)
    for feature, raw_feature in zip(features, raw):
        assert float(jnp.min(feature)) >= 0.0 and float(jnp.min(raw_feature)) < 0.0
    np.testing.assert_allclose(features[0], jnp.maximum(raw[0], 0.0), rtol=1e-6, atol=1e-6)


def test_nin_follows_nin_lua():
    """Kernel sizes 5/1/1, 5/1/1, 3/1/1, convs without bias under BN, Torch7 inits (MSRinit fan-in, BN U(0, 1))."""
    model = create("nin-wide", 10)
    params = jax.jit(lambda key: model.init(key, jnp.zeros((1, 32, 32, 3)), train=False))(jax.random.key(0))["params"]
    sizes = [params[f"block{b}_{p}_conv"]["kernel"].shape[:2] for b in (1, 2, 3) for p in (1, 2, 3)]
    assert sizes == [(5, 5), (1, 1), (1, 1), (5, 5), (1, 1), (1, 1), (3, 3), (1, 1), (1, 1)]
    assert not any("bias" in params[f"block{b}_{p}_conv"] for b in (1, 2, 3) for p in (1, 2, 3))
    # utils.lua MSRinit: N(0, 2 / (kW * kH * nInputPlane)); fan-out (25 * 192) would give a std sqrt(2) smaller
    kernel = np.asarray(params["block2_1_conv"]["kernel"])  # (5, 5, 96, 192): fan-in 25 * 96
    assert abs(kernel.std() / np.sqrt(2.0 / (25 * 96)) - 1.0) < 0.05
    kernel = np.asarray(params["block1_2_conv"]["kernel"])  # (1, 1, 192, 160): fan-in 192 (fan-out 160)
    assert abs(kernel.std() / np.sqrt(2.0 / 192) - 1.0) < 0.05
    scale = np.asarray(params["block2_1_bn"]["scale"])
    assert scale.min() >= 0.0 and scale.max() <= 1.0 and 0.35 < scale.mean() < 0.65
    assert params["classifier"]["kernel"].shape == (192, 10)
    assert np.abs(params["classifier"]["kernel"]).max() <= 1 / np.sqrt(192)


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("wrn-17-1", {}, r"6n\+4.*10, 16, 22, 28, 34"),
        ("wrn-4-1", {}, r"6n\+4"),
        ("wrn-16-0", {}, r"width"),
        ("resnet20", {}, r"18, 34, 50, 101, 152"),
        ("resnet18", {"stem": "tiny"}, r"imagenet, cifar"),
        ("nin-thin-nobn", {"batch_norm": True}, r"no batch norm"),
        ("wrn-16-1", {"depth": 22}, r"unknown option"),
        ("nin-wide", {"dropout": 0.5}, r"unknown option.*dropout"),
        ("vgg16", {}, r"(?=.*unknown model)(?=.*wrn-D-K)(?=.*nin-thin)(?=.*resnet18)"),
        ("wrn-16-1-x", {}, r"unknown model"),
    ],
)
def test_invalid_names_raise_value_error(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        create(name, 10, **kwargs)


# ---------------------------------------------------------------- dtypes and jit
def test_bfloat16_forward_close_to_float32():
    image = jnp.asarray(np.random.default_rng(1).normal(size=(2, 16, 16, 3)), jnp.float32)
    model32 = create("wrn-10-2", 10)
    model16 = create("wrn-10-2", 10, dtype=jnp.bfloat16)
    variables = numpy_variables(model32, image)
    bf16_shapes = jax.eval_shape(lambda: model16.init(jax.random.key(0), image, train=False))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(bf16_shapes))
    for train in (False, True):
        (logits32, _), _ = model32.apply(variables, image, train=train, mutable=["batch_stats"])
        (logits16, features16), stats16 = model16.apply(variables, image, train=train,
                                                        mutable=["batch_stats"])
        assert logits16.dtype == jnp.float32
        assert all(f.dtype == jnp.bfloat16 for f in features16)
        assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(stats16))
        error = jnp.linalg.norm(logits16 - logits32) / jnp.linalg.norm(logits32)
        assert float(error) < 5e-2, (train, float(error))


@pytest.mark.parametrize(
    "name, kwargs, size",
    [("wrn-10-1", {}, 32), ("nin-thin", {}, 32), ("nin-thin-nobn", {}, 32), ("resnet18", {}, 64)],
)
def test_jit_forward_train_and_eval(name, kwargs, size):
    model = create(name, 10, **kwargs)
    batch = 1 if name.startswith("resnet") else 2
    image = jnp.asarray(np.random.default_rng(1).normal(size=(batch, size, size, 3)), jnp.float32)
    variables = numpy_variables(model, image)

    @jax.jit
    def train_forward(variables, image):
        (logits, features), updated = model.apply(variables, image, train=True, mutable=["batch_stats"])
        return logits, features, updated

    eval_forward = jax.jit(lambda variables, image: model.apply(variables, image, train=False))
    logits, features, updated = train_forward(variables, image)
    eval_logits, eval_features = eval_forward(variables, image)
    assert logits.shape == eval_logits.shape == (image.shape[0], 10)
    assert np.all(np.isfinite(logits)) and np.all(np.isfinite(eval_logits))
    assert len(features) == len(eval_features)
    if "batch_stats" in variables:  # train mode used batch statistics and updated the running ones
        changed = jax.tree.map(lambda a, b: bool(np.any(a != b)),
                               updated["batch_stats"], variables["batch_stats"])
        assert all(jax.tree.leaves(changed))
        assert not np.allclose(logits, eval_logits)
    else:
        np.testing.assert_allclose(logits, eval_logits, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- channel attention hook
class ZeroGate(nn.Module):
    """Multiplies by a per-channel parameter initialised to 0: the residual branch vanishes."""

    @nn.compact
    def __call__(self, y: jax.Array) -> jax.Array:
        gate = self.param("gate", nn.initializers.zeros, (y.shape[-1],))
        return y * gate


@pytest.mark.parametrize(
    "block, apply_to_input",
    [
        (WideBasicBlock(out_channels=8, channel_attention=ZeroGate), lambda x: x),
        (ResidualBlock(width=8, kind="basic", channel_attention=ZeroGate), nn.relu),
        (ResidualBlock(width=2, kind="bottleneck", channel_attention=ZeroGate), nn.relu),
    ],
)
def test_channel_attention_acts_on_residual_branch(block, apply_to_input):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 4, 8)), jnp.float32)
    variables = numpy_variables(block, x)
    assert variables["params"]["ZeroGate_0"]["gate"].shape == (8,)
    out = block.apply(variables, x, train=False)
    np.testing.assert_allclose(out, apply_to_input(x), atol=1e-6)


def test_channel_attention_reaches_every_block_via_create():
    model = create("wrn-10-1", 10, channel_attention=ZeroGate)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))
    blocks = [name for name in shapes["params"] if name.startswith("group")]
    assert len(blocks) == 3 and all("ZeroGate_0" in shapes["params"][name] for name in blocks)

"""Channel Reassessment Attention: adaptive pooling and the CRA module against PyTorch, CRA models."""
from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import at_jax.models.cra  # noqa: F401  (registers *-cra)
import at_jax.models.resnet  # noqa: F401
import at_jax.models.wrn  # noqa: F401
from at_jax.models import create
from at_jax.models.cra import ChannelReassessment, cra_parameter_count
from at_jax.spatial import adaptive_avg_pool, adaptive_pool_matrix
from at_jax.models.resnet import ResidualBlock
from model_utils import count_params, numpy_variables, param_shapes

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "cra.npz")


@pytest.fixture(scope="module")
def fixture():
    return np.load(FIXTURE)


def names(data, group: str) -> list[str]:
    return sorted({key.split("/")[1] for key in data.files if key.startswith(group + "/")})


# ------------------------------------------------------------------ against PyTorch
def test_pool_fixture_covers_indivisible_and_smaller_sizes(fixture):
    assert {"7x7_to_4", "10x10_to_7", "15x9_to_4", "2x3_to_4"} <= set(names(fixture, "pool"))


@pytest.mark.parametrize("case", ["7x7_to_4", "10x10_to_7", "15x9_to_4", "2x3_to_4", "8x8_to_4"])
def test_adaptive_pool_matches_pytorch(fixture, case):
    x = fixture[f"pool/{case}/input"].astype(np.float32)
    expected = fixture[f"pool/{case}/output"]
    grid = expected.shape[1]
    result = jax.jit(adaptive_avg_pool, static_argnums=1)(x, (grid, grid))
    assert result.shape == expected.shape and result.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(result), expected, rtol=0, atol=2e-6)


def test_pool_bins_follow_floor_ceil_rule():
    # 7 -> 4: bins [0,2) [1,4) [3,6) [5,7): overlapping, as PyTorch
    weights = adaptive_pool_matrix(7, 4)
    support = [tuple(np.flatnonzero(row)) for row in weights]
    assert support == [(0, 1), (1, 2, 3), (3, 4, 5), (5, 6)]
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)


@pytest.mark.parametrize("case", ["c6_10x9_k4", "c5_14x14_k7", "c4_3x3_k4"])
def test_cra_module_matches_pytorch(fixture, case):
    y = fixture[f"block/{case}/input"].astype(np.float32)
    weight = fixture[f"block/{case}/weight"].astype(np.float32)  # (C, 1, k, k)
    grid = weight.shape[-1]
    variables = {"params": {"conv": {"kernel": weight.transpose(2, 3, 1, 0),
                                     "bias": fixture[f"block/{case}/bias"].astype(np.float32)}}}
    module = ChannelReassessment(grid=grid)
    assert jax.tree.map(np.shape, variables) == jax.tree.map(
        np.shape, jax.eval_shape(lambda: module.init(jax.random.key(0), y)))
    result = jax.jit(module.apply)(variables, y)
    np.testing.assert_allclose(np.asarray(result), fixture[f"block/{case}/output"], rtol=0, atol=1e-5)


def test_resnet_block_with_cra_matches_pytorch(fixture):
    """torchvision BasicBlock (stride 2, conv-BN shortcut) with CRA after bn2, eval mode."""
    state = {key[len("resblock/state/"):]: fixture[key].astype(np.float32)
             for key in fixture.files if key.startswith("resblock/state/")}
    hwio = lambda w: w.transpose(2, 3, 1, 0)  # noqa: E731
    bn = lambda p: {"scale": state[f"{p}.weight"], "bias": state[f"{p}.bias"]}  # noqa: E731
    stats = lambda p: {"mean": state[f"{p}.running_mean"], "var": state[f"{p}.running_var"]}  # noqa: E731
    variables = {
        "params": {"conv1": {"kernel": hwio(state["conv1.weight"])}, "bn1": bn("bn1"),
                   "conv2": {"kernel": hwio(state["conv2.weight"])}, "bn2": bn("bn2"),
                   "downsample_conv": {"kernel": hwio(state["downsample.0.weight"])},
                   "downsample_bn": bn("downsample.1"),
                   "ChannelReassessment_0": {"conv": {"kernel": hwio(state["cra.weight"]),
                                                      "bias": state["cra.bias"]}}},
        "batch_stats": {"bn1": stats("bn1"), "bn2": stats("bn2"), "downsample_bn": stats("downsample.1")},
    }
    block = ResidualBlock(width=8, stride=2, kind="basic",
                          channel_attention=functools.partial(ChannelReassessment, grid=4))
    x = fixture["resblock/input"].astype(np.float32)
    result = jax.jit(functools.partial(block.apply, train=False))(variables, x)
    np.testing.assert_allclose(np.asarray(result), fixture["resblock/output"], rtol=0, atol=2e-5)


# ------------------------------------------------------------------ behaviour
def test_cra_gate_is_sigmoid_of_bias_for_zero_kernel():
    y = np.random.default_rng(0).normal(size=(2, 5, 6, 3)).astype(np.float32)
    bias = np.array([-1.0, 0.0, 2.0], np.float32)
    variables = {"params": {"conv": {"kernel": np.zeros((3, 3, 1, 3), np.float32), "bias": bias}}}
    result = ChannelReassessment(grid=3).apply(variables, y)
    np.testing.assert_allclose(np.asarray(result), y * (1 / (1 + np.exp(-bias))), rtol=1e-6, atol=1e-6)


def test_cra_keeps_compute_dtype():
    y = jnp.ones((1, 8, 8, 4), jnp.bfloat16)
    module = ChannelReassessment(grid=4, dtype=jnp.bfloat16)
    variables = jax.eval_shape(lambda: module.init(jax.random.key(0), y))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
    assert jax.eval_shape(module.apply, variables, y).dtype == jnp.bfloat16


# ------------------------------------------------------------------ models and parameter counts
def test_resnet50_cra_has_26_31m_parameters():
    count = count_params(create("resnet50-cra", 1000), 64)
    assert count == 25_557_032 + 50 * (3 * 256 + 4 * 512 + 6 * 1024 + 3 * 2048)
    assert count == 26_312_232 and round(count / 1e6, 2) == 26.31  # the authors' 26.31M


@pytest.mark.parametrize("name,base,block_channels,classes", [
    ("resnet18-cra", 11_689_512, [64] * 2 + [128] * 2 + [256] * 2 + [512] * 2, 1000),
    ("resnet34-cra", 21_797_672, [64] * 3 + [128] * 4 + [256] * 6 + [512] * 3, 1000),
    ("wrn-16-1-cra", 175_066, [16] * 2 + [32] * 2 + [64] * 2, 10),
])
def test_cra_adds_c_times_k2_plus_1_per_block(name, base, block_channels, classes):
    grid = 7 if name.startswith("resnet") else 4
    expected = base + sum(cra_parameter_count(c, grid) for c in block_channels)
    assert count_params(create(name, classes), 64 if name.startswith("resnet") else 32) == expected


def test_grid_defaults_and_option():
    def grids(model, size):
        shapes = param_shapes(model, size)
        return {leaf.shape[0] for path, leaf in jax.tree_util.tree_leaves_with_path(shapes["params"])
                if "ChannelReassessment" in jax.tree_util.keystr(path) and path[-1].key == "kernel"}

    assert grids(create("resnet18-cra", 10), 64) == {7}
    assert grids(create("resnet18-cra", 10, stem="cifar"), 16) == {4}
    assert grids(create("wrn-10-1-cra", 10), 16) == {4}
    assert grids(create("wrn-10-1-cra", 10, cra_grid=2), 16) == {2}
    for bad in ({"cra_grid": 0}, {"cra_grid": 2.5}, {"channel_attention": None}, {"grid": 3}):
        with pytest.raises(ValueError):
            create("wrn-10-1-cra", 10, **bad)
    with pytest.raises(ValueError):
        create("resnet19-cra", 10)


@pytest.mark.parametrize("name", ["resnet18-cra", "resnet34-cra", "resnet50-cra", "resnet101-cra"])
def test_resnet_cra_shapes(name):
    model = create(name, 1000)
    x = jnp.zeros((2, 64, 64, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    logits, features = jax.eval_shape(functools.partial(model.apply, train=False), variables, x)
    expansion = 4 if name in ("resnet50-cra", "resnet101-cra") else 1
    assert logits.shape == (2, 1000) and logits.dtype == jnp.float32
    assert [f.shape for f in features] == [(2, 16 >> i, 16 >> i, 64 * expansion << i) for i in range(4)]


def test_wrn_cra_forward_and_train_mode():
    model = create("wrn-10-1-cra", 10)
    x = np.random.default_rng(1).normal(size=(4, 16, 16, 3)).astype(np.float32)
    variables = numpy_variables(model, x, kernel_gain=2.0)
    logits, features = jax.jit(functools.partial(model.apply, train=False))(variables, x)
    assert logits.shape == (4, 10) and np.all(np.isfinite(np.asarray(logits)))
    assert [f.shape for f in features] == [(4, 16, 16, 16), (4, 8, 8, 32), (4, 4, 4, 64)]
    # with every gate at 1 (zero kernel, large bias) the CRA model is the plain WRN with the same weights
    plain = create("wrn-10-1", 10)
    plain_params = {name: {k: v for k, v in value.items() if not k.startswith("ChannelReassessment")}
                    for name, value in variables["params"].items()}
    plain_variables = {"params": plain_params, "batch_stats": variables["batch_stats"]}
    plain_logits, _ = jax.jit(functools.partial(plain.apply, train=False))(plain_variables, x)
    assert not np.allclose(np.asarray(plain_logits), np.asarray(logits), atol=1e-3)
    open_gates = jax.tree_util.tree_map_with_path(
        lambda path, leaf: (np.zeros_like(leaf) if path[-1].key == "kernel" else np.full_like(leaf, 40.0))
        if "ChannelReassessment" in jax.tree_util.keystr(path) else leaf, variables)
    open_logits, _ = jax.jit(functools.partial(model.apply, train=False))(open_gates, x)
    np.testing.assert_allclose(np.asarray(open_logits), np.asarray(plain_logits), rtol=1e-5, atol=1e-5)


def load_config(name: str, argument: str | None = None):
    import importlib.util  # pylint: disable=import-outside-toplevel
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"config_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(argument)


def test_cra_configs_name_valid_models_and_recipes():
    cifar = load_config("cra_cifar", "student=wrn-16-1-cra,teacher=wrn-16-2-cra,method=at,dataset=cifar100")
    assert (cifar.model, cifar.dataset.name, cifar.loss.at_beta) == ("wrn-16-1-cra", "cifar100", 1e3)
    assert cifar.model_kwargs.cra_grid == 4 and tuple(cifar.optimizer.decay_at) == (0.3, 0.6, 0.8)
    imagenet = load_config("cra_imagenet")
    assert (imagenet.model, imagenet.dataset.name, imagenet.batch_size) == ("resnet50-cra", "imagenet", 256)
    assert imagenet.model_kwargs.cra_grid == 7 and imagenet.optimizer.weight_decay == 1e-4
    assert set(imagenet.dataset.keys()) == {"name", "data_dir", "seed", "pipeline", "workers", "image_size", "verify"}
    assert imagenet.dataset.pipeline == "stream" and imagenet.optimizer.nesterov
    assert tuple(imagenet.optimizer.decay_at) == (0.3, 0.6, 0.9) and imagenet.optimizer.decay_factor == 0.1
    for config in (cifar, imagenet):
        model = create(config.model, 10, **config.model_kwargs.to_dict())
        assert count_params(model, 32) > 0
        create(config.teacher.model, 10)
    assert not load_config("cra_cifar", "student=wrn-16-1").model_kwargs.to_dict()
    with pytest.raises(ValueError):
        load_config("cra_cifar", "dataset=svhn")

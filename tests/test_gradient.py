"""Tests for at_jax.gradient: PyTorch fixture, float64 finite differences, and behaviours."""
from __future__ import annotations

import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from at_jax.gradient import (
    flip_symmetry_loss,
    gradient_at_loss,
    input_gradient,
    input_gradient_penalty,
)

FIXTURE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "gradient.npz")
PARAM_NAMES = ("conv1/kernel", "conv1/bias", "conv2/kernel", "conv2/bias", "dense/kernel", "dense/bias")
ACTIVATIONS = {"tanh": jnp.tanh, "softplus": jax.nn.softplus, "relu": jax.nn.relu}
STUDENT_ACTIVATIONS = ("tanh", "softplus")
TEACHER_ACTIVATIONS = ("relu", "relu")
LOSS_NAMES = ("gradient_at_loss", "input_gradient_penalty", "flip_symmetry_loss")


# ---------------------------------------------------------------------------------------------
# Networks as plain functions of a params dict (independent of the model zoo).
# ---------------------------------------------------------------------------------------------
def conv(x: jax.Array, kernel: jax.Array, bias: jax.Array, stride: int) -> jax.Array:
    """NHWC x HWIO convolution with padding 1 on each side (PyTorch's padding=1)."""
    out = jax.lax.conv_general_dilated(
        x, kernel, window_strides=(stride, stride), padding=((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return out + bias


def mean_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def fixture_cnn_logits(params: dict, x: jax.Array, activations: tuple[str, str]) -> jax.Array:
    """conv3x3 → act → conv3x3/2 → act → flatten (NHWC) → dense; as tests/make_fixtures_gradient.py."""
    act1, act2 = (ACTIVATIONS[name] for name in activations)
    h = act1(conv(x, params["conv1/kernel"], params["conv1/bias"], stride=1))
    h = act2(conv(h, params["conv2/kernel"], params["conv2/bias"], stride=2))
    h = h.reshape(h.shape[0], -1)
    return h @ params["dense/kernel"] + params["dense/bias"]


def fixture_loss(activations: tuple[str, str]):
    def loss_fn(params, x, y):
        return mean_cross_entropy(fixture_cnn_logits(params, x, activations), y)
    return loss_fn


student_loss = fixture_loss(STUDENT_ACTIVATIONS)
teacher_loss = fixture_loss(TEACHER_ACTIVATIONS)


def pooled_cnn_logits(params: dict, x: jax.Array) -> jax.Array:
    """Tiny smooth net: conv3x3 (stride 1) → tanh → conv3x3 → softplus → global mean → dense."""
    h = jnp.tanh(conv(x, params["conv1/kernel"], params["conv1/bias"], stride=1))
    h = jax.nn.softplus(conv(h, params["conv2/kernel"], params["conv2/bias"], stride=1))
    return jnp.mean(h, axis=(1, 2)) @ params["dense/kernel"] + params["dense/bias"]


def pooled_loss(params, x, y):
    return mean_cross_entropy(pooled_cnn_logits(params, x), y)


def one_conv_loss(params, x, y):
    """Smallest smooth net for the float64 check: conv3x3 → tanh → global mean → dense → CE."""
    h = jnp.tanh(conv(x, params["conv/kernel"], params["conv/bias"], stride=1))
    return mean_cross_entropy(jnp.mean(h, axis=(1, 2)) @ params["dense/kernel"] + params["dense/bias"], y)


def init_pooled_params(seed: int, widths=(3, 4), in_channels=2, num_classes=3, dtype=np.float32) -> dict:
    """Random params of :func:`pooled_cnn_logits` (numpy RNG: no eager JAX dispatch in tests)."""
    rng = np.random.default_rng(seed)
    shapes = {
        "conv1/kernel": (3, 3, in_channels, widths[0]), "conv1/bias": (widths[0],),
        "conv2/kernel": (3, 3, widths[0], widths[1]), "conv2/bias": (widths[1],),
        "dense/kernel": (widths[1], num_classes), "dense/bias": (num_classes,),
    }
    return {name: jnp.asarray(0.6 * rng.standard_normal(shape), dtype) for name, shape in shapes.items()}


def tiny_batch(seed: int, shape=(2, 5, 5, 2), num_classes=3, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal(shape), dtype)
    return x, jnp.asarray(rng.integers(0, num_classes, size=shape[0]), jnp.int32)


def loss_value(loss_name: str, params_s, x, y, params_t=None):
    if loss_name == "gradient_at_loss":
        return gradient_at_loss(student_loss, params_s, teacher_loss, params_t, x, y)
    if loss_name == "input_gradient_penalty":
        return input_gradient_penalty(student_loss, params_s, x, y)
    return flip_symmetry_loss(student_loss, params_s, x, y)


@pytest.fixture(scope="module")
def fixture():
    data = np.load(FIXTURE_PATH)
    return {
        "x": jnp.asarray(data["x"]),
        "y": jnp.asarray(data["y"]),
        "student": {name: jnp.asarray(data[f"student/{name}"]) for name in PARAM_NAMES},
        "teacher": {name: jnp.asarray(data[f"teacher/{name}"]) for name in PARAM_NAMES},
        "arrays": {key: data[key] for key in data.files},
    }


def assert_close_to_reference(actual, reference, rtol=1e-4, atol_fraction=1e-5):
    """Elementwise rtol, plus an atol scaled to the reference's largest magnitude (float32 noise)."""
    reference = np.asarray(reference, np.float64)
    atol = atol_fraction * float(np.max(np.abs(reference)))
    np.testing.assert_allclose(np.asarray(actual, np.float64), reference, rtol=rtol, atol=atol)


@functools.partial(jax.jit, static_argnums=0)
def loss_value_and_student_grads(loss_name: str, params_s, x, y, params_t):
    return jax.value_and_grad(loss_value, argnums=1)(loss_name, params_s, x, y, params_t)


# ---------------------------------------------------------------------------------------------
# Against the PyTorch fixture (float32).
# ---------------------------------------------------------------------------------------------
def test_fixture_network_matches_torch_loss(fixture):
    value = jax.jit(student_loss)(fixture["student"], fixture["x"], fixture["y"])
    assert_close_to_reference(value, fixture["arrays"]["loss_s"], rtol=1e-5)


@pytest.mark.parametrize("who", ["s", "t"])
def test_input_gradient_matches_torch(fixture, who):
    params, loss_fn = (fixture["student"], student_loss) if who == "s" else (fixture["teacher"], teacher_loss)
    input_grad = jax.jit(functools.partial(input_gradient, loss_fn))(params, fixture["x"], fixture["y"])
    assert input_grad.shape == fixture["x"].shape
    assert_close_to_reference(input_grad, fixture["arrays"][f"input_gradient_{who}"])


@pytest.mark.parametrize("loss_name", LOSS_NAMES)
def test_loss_value_and_student_gradients_match_torch(fixture, loss_name):
    arrays = fixture["arrays"]
    value, grads = loss_value_and_student_grads(
        loss_name, fixture["student"], fixture["x"], fixture["y"], fixture["teacher"]
    )
    assert_close_to_reference(value, arrays[f"{loss_name}/value"])
    for name in PARAM_NAMES:
        assert grads[name].shape == arrays[f"{loss_name}/grad/{name}"].shape
        assert_close_to_reference(grads[name], arrays[f"{loss_name}/grad/{name}"])


# ---------------------------------------------------------------------------------------------
# Mixed second derivative: central finite differences in float64.
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss_name", LOSS_NAMES)
def test_mixed_second_derivative_matches_finite_differences_float64(loss_name):
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        random_params = lambda width: {
            name: jnp.asarray(0.6 * rng.standard_normal(shape))
            for name, shape in (("conv/kernel", (3, 3, 2, width)), ("conv/bias", (width,)),
                                ("dense/kernel", (width, 3)), ("dense/bias", (3,)))
        }
        params_s, params_t = random_params(3), random_params(5)
        x, y = tiny_batch(2, dtype=np.float64)
        losses = {
            "gradient_at_loss": lambda p: gradient_at_loss(one_conv_loss, p, one_conv_loss, params_t, x, y),
            "input_gradient_penalty": lambda p: input_gradient_penalty(one_conv_loss, p, x, y),
            "flip_symmetry_loss": lambda p: flip_symmetry_loss(one_conv_loss, p, x, y),
        }
        flat_params, unravel = ravel_pytree(params_s)
        assert flat_params.dtype == jnp.float64
        direction = np.random.default_rng(3).standard_normal(flat_params.shape)
        direction = jnp.asarray(direction / np.linalg.norm(direction))
        step = 1e-5

        @jax.jit
        def analytic_and_finite_difference(flat_params):
            loss_of_flat = lambda flat: losses[loss_name](unravel(flat))
            analytic = jnp.dot(jax.grad(loss_of_flat)(flat_params), direction)
            finite_difference = (
                loss_of_flat(flat_params + step * direction) - loss_of_flat(flat_params - step * direction)
            ) / (2 * step)
            return analytic, finite_difference

        analytic, finite_difference = (float(v) for v in analytic_and_finite_difference(flat_params))
    assert abs(analytic) > 1e-4  # a non-trivial direction
    assert abs(analytic - finite_difference) <= 1e-7 * abs(analytic), (analytic, finite_difference)
    assert jnp.ones(()).dtype == jnp.float32  # x64 did not leak out of the context


# ---------------------------------------------------------------------------------------------
# Behaviours.
# ---------------------------------------------------------------------------------------------
def test_teacher_gets_exactly_zero_gradient(fixture):
    grads_t = jax.jit(jax.grad(
        lambda p_t, x, y: gradient_at_loss(student_loss, fixture["student"], teacher_loss, p_t, x, y)
    ))(fixture["teacher"], fixture["x"], fixture["y"])
    for name in PARAM_NAMES:
        assert np.all(np.asarray(grads_t[name]) == 0.0)


def test_gradient_at_loss_is_zero_for_identical_models_and_penalty_for_constant_teacher(fixture):
    x, y, params_s = fixture["x"], fixture["y"], fixture["student"]
    constant_teacher = lambda params, x, y: jnp.sum(params["c"])  # J_T = 0

    @jax.jit
    def values(params_s, x, y):
        return (
            gradient_at_loss(student_loss, params_s, student_loss, params_s, x, y),
            gradient_at_loss(student_loss, params_s, constant_teacher, {"c": jnp.ones(2)}, x, y),
            input_gradient_penalty(student_loss, params_s, x, y),
        )

    self_transfer, constant_teacher_transfer, penalty = values(params_s, x, y)
    assert float(self_transfer) == 0.0
    np.testing.assert_allclose(constant_teacher_transfer, penalty, rtol=1e-6)
    assert float(penalty) > 0.0


def symmetrize_width(params: dict) -> dict:
    """Conv kernels made symmetric under width flip (HWIO axis 1)."""
    return {
        name: 0.5 * (value + jnp.flip(value, axis=1)) if name.endswith("kernel") and value.ndim == 4 else value
        for name, value in params.items()
    }


def test_flip_symmetry_loss_is_zero_for_flip_invariant_network():
    params = init_pooled_params(4)
    x, y = tiny_batch(5, shape=(3, 6, 7, 2))

    @jax.jit
    def quantities(params, x, y):
        symmetric = symmetrize_width(params)
        return (
            pooled_loss(symmetric, x, y),
            pooled_loss(symmetric, jnp.flip(x, axis=2), y),
            input_gradient_penalty(pooled_loss, symmetric, x, y),
            flip_symmetry_loss(pooled_loss, symmetric, x, y),
            flip_symmetry_loss(pooled_loss, params, x, y),
        )

    loss, loss_of_flipped, scale, symmetric_value, asymmetric_value = (float(v) for v in quantities(params, x, y))
    # the network is invariant, L(flip x) = L(x), hence J(x) = flip(J(flip x))
    np.testing.assert_allclose(loss_of_flipped, loss, rtol=1e-6)
    assert symmetric_value <= 1e-10 * scale
    assert asymmetric_value > 1e-3 * scale


def test_flip_symmetry_loss_is_invariant_under_flipping_the_input(fixture):
    # A(x) = J(x) - flip(J(flip x)) satisfies A(flip x) = -flip(A(x)), so the loss is unchanged.
    @jax.jit
    def values(params, x, y):
        return (
            flip_symmetry_loss(student_loss, params, x, y),
            flip_symmetry_loss(student_loss, params, jnp.flip(x, axis=2), y),
            flip_symmetry_loss(student_loss, params, x, y, axis=1),
        )

    width_flip, width_flip_of_flipped, height_flip = values(fixture["student"], fixture["x"], fixture["y"])
    np.testing.assert_allclose(width_flip_of_flipped, width_flip, rtol=1e-5)
    assert not np.isclose(float(height_flip), float(width_flip), rtol=1e-3)  # the axis keyword is used


def test_flip_symmetry_loss_uses_y_flipped_for_spatial_targets():
    # L = Σ w (x - y)² with w symmetric under width flip: J(x) = 2w(x - y), so the flipped
    # evaluation matches exactly when its targets are flipped too, and not with unflipped targets.
    x, y = tiny_batch(8, shape=(2, 3, 4, 1))
    targets = x + jnp.asarray(np.random.default_rng(9).standard_normal(x.shape), jnp.float32)
    weights = jnp.asarray(np.random.default_rng(10).uniform(0.5, 1.5, x.shape), jnp.float32)
    weights = weights + jnp.flip(weights, axis=2)
    loss_fn = lambda w, x, y: jnp.sum(w * jnp.square(x - y))

    @jax.jit
    def values(weights, x, targets):
        return (
            flip_symmetry_loss(loss_fn, weights, x, targets, y_flipped=jnp.flip(targets, axis=2)),
            flip_symmetry_loss(loss_fn, weights, x, targets),
            input_gradient_penalty(loss_fn, weights, x, targets),
        )

    with_flipped_targets, with_same_targets, scale = (float(v) for v in values(weights, x, targets))
    assert with_flipped_targets <= 1e-10 * scale
    assert with_same_targets > 1e-2 * scale


def with_logits_aux(activations):
    def loss_fn(params, x, y):
        logits = fixture_cnn_logits(params, x, activations)
        return mean_cross_entropy(logits, y), {"logits": logits}
    return loss_fn


def test_has_aux_returns_value_and_aux_of_unflipped_evaluation(fixture):
    student_aux, teacher_aux = with_logits_aux(STUDENT_ACTIVATIONS), with_logits_aux(TEACHER_ACTIVATIONS)

    @jax.jit
    def results(params_s, params_t, x, y):
        return {
            "logits_x": fixture_cnn_logits(params_s, x, STUDENT_ACTIVATIONS),
            "logits_flipped": fixture_cnn_logits(params_s, jnp.flip(x, axis=2), STUDENT_ACTIVATIONS),
            "input_gradient": input_gradient(student_aux, params_s, x, y, has_aux=True),
            "plain_input_gradient": input_gradient(student_loss, params_s, x, y),
            "gradient_at_loss": gradient_at_loss(student_aux, params_s, teacher_aux, params_t, x, y, has_aux=True),
            "gradient_at_loss/plain_teacher": gradient_at_loss(
                student_aux, params_s, teacher_loss, params_t, x, y, has_aux=True, teacher_has_aux=False
            ),
            "input_gradient_penalty": input_gradient_penalty(student_aux, params_s, x, y, has_aux=True),
            "flip_symmetry_loss": flip_symmetry_loss(student_aux, params_s, x, y, has_aux=True),
        }

    got = results(fixture["student"], fixture["teacher"], fixture["x"], fixture["y"])
    logits_x = got["logits_x"]
    assert not np.allclose(logits_x, got["logits_flipped"], atol=1e-3)
    input_grad, aux = got["input_gradient"]
    np.testing.assert_allclose(input_grad, got["plain_input_gradient"], rtol=1e-6)
    np.testing.assert_allclose(aux["logits"], logits_x, rtol=1e-6)
    for key in ("gradient_at_loss", "gradient_at_loss/plain_teacher", "input_gradient_penalty", "flip_symmetry_loss"):
        value, aux = got[key]
        reference = fixture["arrays"][f"{key.split('/')[0]}/value"]
        assert_close_to_reference(value, reference)
        np.testing.assert_allclose(aux["logits"], logits_x, rtol=1e-6)


class BatchNormNet(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
        init = nn.initializers.normal(0.5)  # plain normal: compiles faster than truncated
        h = nn.Conv(4, (3, 3), kernel_init=init)(x)
        h = jnp.tanh(nn.BatchNorm(use_running_average=not train, momentum=0.9)(h))
        return nn.Dense(3, kernel_init=init)(jnp.mean(h, axis=(1, 2)))


def test_has_aux_with_flax_batch_norm_state_under_outer_grad():
    model = BatchNormNet()
    x, y = tiny_batch(6, shape=(4, 6, 6, 2))
    variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(7), x)

    def train_loss(params, batch_stats, x, y):
        logits, updates = model.apply(
            {"params": params, "batch_stats": batch_stats}, x, train=True, mutable=["batch_stats"]
        )
        return mean_cross_entropy(logits, y), updates["batch_stats"]

    @jax.jit
    def step(variables, x, y):
        loss_fn = lambda params, x, y: train_loss(params, variables["batch_stats"], x, y)
        objective = lambda params: flip_symmetry_loss(loss_fn, params, x, y, has_aux=True)
        (value, new_stats), grads = jax.value_and_grad(objective, has_aux=True)(variables["params"])
        _, stats_of_x = loss_fn(variables["params"], x, y)
        _, stats_of_flipped = loss_fn(variables["params"], jnp.flip(x, axis=2), y)
        return value, new_stats, grads, stats_of_x, stats_of_flipped

    value, new_stats, grads, stats_of_x, stats_of_flipped = step(variables, x, y)
    assert np.isfinite(float(value)) and float(value) > 0.0
    grad_leaves = jax.tree_util.tree_leaves(grads)
    assert all(np.all(np.isfinite(g)) for g in grad_leaves) and any(np.any(g != 0) for g in grad_leaves)
    leaves = [jax.tree_util.tree_leaves(t) for t in (new_stats, stats_of_x, stats_of_flipped)]
    for got, of_x in zip(leaves[0], leaves[1]):
        np.testing.assert_allclose(got, of_x, rtol=1e-5, atol=1e-7)
    assert not all(np.allclose(got, of_flipped, rtol=1e-4) for got, of_flipped in zip(leaves[0], leaves[2]))


def test_bfloat16_inputs_accumulate_in_float32(fixture):
    x = fixture["x"].astype(jnp.bfloat16)
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), fixture["student"])
    value = jax.jit(functools.partial(input_gradient_penalty, student_loss))(params, x, fixture["y"])
    assert value.dtype == jnp.float32
    np.testing.assert_allclose(float(value), float(fixture["arrays"]["input_gradient_penalty/value"]), rtol=0.1)

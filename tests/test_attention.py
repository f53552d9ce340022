"""at_jax.attention against PyTorch references (tests/fixtures/core.npz, tests/make_fixtures_core.py)."""
import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from at_jax.attention import (
    adaptive_avg_pool,
    at_loss,
    attention_map,
    match_spatial_size,
    resize_bilinear,
)

FIXTURE = np.load(pathlib.Path(__file__).parent / "fixtures" / "core.npz")
RTOL, ATOL = 1e-5, 1e-7


def assert_close(actual, expected, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("p", [1, 2, 4])
@pytest.mark.parametrize("reduce", ["mean", "sum", "max"])
@pytest.mark.parametrize("normalize", ["l2", "l1", "none"])
def test_attention_map_matches_torch(p, reduce, normalize):
    norm = None if normalize == "none" else normalize
    result = attention_map(FIXTURE["x"], p=float(p), reduce=reduce, normalize=norm)
    assert result.shape == (4, 64) and result.dtype == jnp.float32
    assert_close(result, FIXTURE[f"map/p{p}/{reduce}/{normalize}"])


def test_attention_map_default_is_official_at():
    result = np.asarray(attention_map(FIXTURE["x"]))
    assert_close(result, FIXTURE["map/official"])
    np.testing.assert_array_equal(result[1], 0.0)  # the all-zero example stays zero (eps)
    np.testing.assert_allclose(np.linalg.norm(result[[0, 2, 3]], axis=1), 1.0, rtol=1e-6)


def test_sum_and_mean_agree_after_normalisation():
    x = FIXTURE["x"]
    np.testing.assert_allclose(attention_map(x, reduce="sum"), attention_map(x), rtol=1e-6)


def test_normalize_none_alias_string():
    x = FIXTURE["x"]
    np.testing.assert_array_equal(attention_map(x, normalize="none"),
                                  attention_map(x, normalize=None))


def test_bf16_input_computes_in_float32():
    x_bf16 = jnp.asarray(FIXTURE["x"], jnp.bfloat16)
    result = attention_map(x_bf16)
    assert result.dtype == jnp.float32
    np.testing.assert_array_equal(result, attention_map(x_bf16.astype(jnp.float32)))
    assert_close(result, FIXTURE["map/official"], rtol=2e-2, atol=2e-3)
    s = jnp.asarray(FIXTURE["resize/s6x9_t4x3/s"], jnp.bfloat16)
    t = jnp.asarray(FIXTURE["resize/s6x9_t4x3/t"], jnp.bfloat16)
    loss = at_loss(s, t)
    assert loss.dtype == jnp.float32
    np.testing.assert_array_equal(loss, at_loss(s.astype(jnp.float32), t.astype(jnp.float32)))


def test_at_loss_official_value_and_gradient():
    value, grad = jax.jit(jax.value_and_grad(at_loss))(FIXTURE["s"], FIXTURE["t"])
    assert_close(value, FIXTURE["at/official"])
    assert_close(grad, FIXTURE["at/official/grad"], atol=1e-9)
    assert np.all(np.isfinite(grad)) and np.all(np.asarray(grad)[2] == 0.0)  # zero example


VARIANTS = {
    "p1_sum_l2": dict(p=1.0, reduce="sum"),
    "p4_max_l1": dict(p=4.0, reduce="max", normalize="l1"),
    "p2_mean_none": dict(normalize=None),
    "paper": dict(form="paper"),
    "paper_p4_sum": dict(p=4.0, reduce="sum", form="paper"),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_at_loss_variants_value_and_gradient(name):
    loss = functools.partial(at_loss, **VARIANTS[name])
    value, grad = jax.jit(jax.value_and_grad(loss))(FIXTURE["s"], FIXTURE["t"])
    assert_close(value, FIXTURE[f"at/{name}"])
    expected = FIXTURE[f"at/{name}/grad"]
    assert_close(grad, expected, atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize("case", ["s8_t4", "s4_t8", "s6x9_t4x3", "s8x3_t4x6"])
@pytest.mark.parametrize("resize", ["pool", "interpolate"])
def test_at_loss_unequal_spatial_sizes(case, resize):
    s, t = FIXTURE[f"resize/{case}/s"], FIXTURE[f"resize/{case}/t"]
    key = f"resize/{case}/{resize}"
    value, grad = jax.jit(jax.value_and_grad(functools.partial(at_loss, resize=resize)))(s, t)
    assert_close(value, FIXTURE[key])
    expected = FIXTURE[f"{key}/grad"]
    assert grad.shape == s.shape
    assert_close(grad, expected, atol=1e-6 * np.abs(expected).max())


def test_pool_and_interpolate_match_torch_non_integer_factor():
    s = FIXTURE["resize/s6x9_t4x3/s"]
    assert_close(adaptive_avg_pool(s, (4, 3)), FIXTURE["pool/s6x9_to_4x3"], atol=1e-6)
    assert_close(resize_bilinear(s, (4, 3)), FIXTURE["interpolate/s6x9_to_4x3"], atol=1e-6)


def test_match_spatial_size_shrinks_each_axis_independently():
    s, t = jnp.ones((2, 8, 3, 4)), jnp.ones((2, 4, 6, 7))
    for resize in ("pool", "interpolate"):
        s_out, t_out = match_spatial_size(s, t, resize=resize)
        assert s_out.shape == (2, 4, 3, 4) and t_out.shape == (2, 4, 3, 7)


def test_at_loss_is_zero_for_identical_inputs_with_finite_gradient():
    s = FIXTURE["s"]
    for form in ("code", "paper"):
        value, grad = jax.jit(jax.value_and_grad(functools.partial(at_loss, form=form)))(s, s)
        assert abs(float(value)) < 1e-6  # XLA may round the two identical maps differently
        assert np.all(np.isfinite(grad))


def test_at_loss_jit_matches_eager():
    s, t = FIXTURE["resize/s6x9_t4x3/s"], FIXTURE["resize/s6x9_t4x3/t"]
    loss = functools.partial(at_loss, resize="interpolate", form="paper", p=4.0, reduce="max")
    np.testing.assert_allclose(jax.jit(loss)(s, t), loss(s, t), rtol=1e-6)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(reduce="median"), "reduce"),
        (dict(normalize="l3"), "normalize"),
        (dict(resize="nearest"), "resize"),
        (dict(form="both"), "form"),
        (dict(p=0.0), "p must"),
        (dict(p=-2.0), "p must"),
    ],
)
def test_invalid_options_raise(options, message):
    with pytest.raises(ValueError, match=message):
        at_loss(FIXTURE["s"], FIXTURE["t"], **options)


def test_invalid_options_name_the_valid_ones():
    with pytest.raises(ValueError, match="'mean', 'sum', 'max'"):
        attention_map(FIXTURE["x"], reduce="avg")


def test_invalid_shapes_raise():
    with pytest.raises(ValueError, match="4-D"):
        attention_map(jnp.ones((4, 8, 8)))
    with pytest.raises(ValueError, match="batch sizes"):
        at_loss(jnp.ones((4, 8, 8, 3)), jnp.ones((2, 8, 8, 3)))

"""Token arrays (B, N, D) in at_jax.attention: maps on the patch grid, against a plain numpy formulation."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from at_jax import losses
from at_jax.attention import at_loss, attention_map, match_spatial_size, token_grid, tokens_to_grid
from at_jax.spatial import resize_bilinear

RNG = np.random.default_rng(0)


def numpy_grid(tokens: np.ndarray, prefix: int, grid: tuple[int, int]) -> np.ndarray:
    """The patch tokens (after the ``prefix`` leading ones) on their row-major grid, (B, h, w, D)."""
    batch, _, dim = tokens.shape
    return np.asarray(tokens, np.float64)[:, prefix:].reshape(batch, grid[0], grid[1], dim)


def numpy_map(activation: np.ndarray, p: float = 2.0) -> np.ndarray:
    """mean_c |A_c|**p per position, flattened row-major, l2-normalised per example (eps 1e-12)."""
    flat = np.mean(np.abs(np.asarray(activation, np.float64)) ** p, axis=-1).reshape(len(activation), -1)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)


def block_average(activation: np.ndarray, factor: int) -> np.ndarray:
    """Average of non-overlapping factor x factor windows of an NHWC array."""
    b, h, w, c = activation.shape
    return np.asarray(activation, np.float64).reshape(b, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


def tokens(batch: int, count: int, dim: int) -> np.ndarray:
    return RNG.normal(size=(batch, count, dim)).astype(np.float32)


@pytest.mark.parametrize(
    "count, kwargs, prefix, grid",
    [
        (16, {}, 0, (4, 4)),                           # square: no extra token
        (17, {}, 1, (4, 4)),                           # class token
        (18, {}, 2, (4, 4)),                           # class + distillation (DeiT)
        (21, {"prefix_tokens": 5}, 5, (4, 4)),         # class + 4 registers
        (16, {"grid": (3, 5)}, 1, (3, 5)),             # non-square grid overrides the square default
        (17, {"grid": (4, 4), "prefix_tokens": 1}, 1, (4, 4)),
    ],
)
def test_token_map_matches_numpy(count, kwargs, prefix, grid):
    x = tokens(3, count, 6)
    assert token_grid(count, **kwargs) == (prefix, grid)
    expected = numpy_map(numpy_grid(x, prefix, grid))
    result = attention_map(jnp.asarray(x), **kwargs)
    assert result.shape == (3, grid[0] * grid[1]) and result.dtype == jnp.float32
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(tokens_to_grid(jnp.asarray(x), **kwargs), numpy_grid(x, prefix, grid).astype(np.float32))


@pytest.mark.parametrize("p, reduce, normalize", [(2.0, "mean", "l2"), (1.0, "sum", "l1"), (4.0, "max", None)])
def test_token_map_is_the_map_of_the_grid_array(p, reduce, normalize):
    """Exactly attention_map of the (B, h, w, D) array, for every option: the embedding is the channel axis."""
    x = jnp.asarray(tokens(2, 1 + 5 * 5, 8))
    options = dict(p=p, reduce=reduce, normalize=normalize)
    np.testing.assert_array_equal(attention_map(x, **options), attention_map(x[:, 1:].reshape(2, 5, 5, 8), **options))


def test_four_d_activations_ignore_token_options():
    x = jnp.asarray(RNG.normal(size=(2, 4, 4, 3)), jnp.float32)
    np.testing.assert_array_equal(attention_map(x, prefix_tokens=1, grid=(2, 8)), attention_map(x))
    assert tokens_to_grid(x) is x


@pytest.mark.parametrize("resize", ["pool", "interpolate"])
@pytest.mark.parametrize("student_is_vit", [True, False])
def test_cnn_and_vit_pair_in_at_loss(resize, student_is_vit):
    """A CNN (B, 8, 8, C) and a ViT (B, 1 + 4*4, D): the larger (CNN) grid is shrunk to 4 x 4 first."""
    cnn = RNG.normal(size=(2, 8, 8, 5)).astype(np.float32)
    vit = tokens(2, 1 + 16, 7)
    if resize == "pool":
        cnn_small = block_average(cnn, 2)
    else:
        cnn_small = np.asarray(resize_bilinear(jnp.asarray(cnn), (4, 4)), np.float64)
    expected = np.mean(np.square(numpy_map(cnn_small) - numpy_map(numpy_grid(vit, 1, (4, 4)))))
    pair = (vit, cnn) if student_is_vit else (cnn, vit)
    value = at_loss(*pair, resize=resize)
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    assert float(value) > 1e-4  # the pair really differs


@pytest.mark.parametrize("resize", ["pool", "interpolate"])
def test_larger_vit_grid_is_shrunk_on_its_grid(resize):
    """ViT (B, 1 + 8*8, D) against a CNN (B, 4, 4, C): the tokens' grid is the one resized."""
    vit, cnn = tokens(2, 1 + 64, 6), RNG.normal(size=(2, 4, 4, 3)).astype(np.float32)
    grid = numpy_grid(vit, 1, (8, 8))
    small = block_average(grid, 2) if resize == "pool" else np.asarray(resize_bilinear(jnp.asarray(grid, jnp.float32), (4, 4)))
    expected = np.mean(np.square(numpy_map(small) - numpy_map(cnn)))
    np.testing.assert_allclose(at_loss(vit, cnn, resize=resize), expected, rtol=1e-5)
    s, t = match_spatial_size(jnp.asarray(vit), jnp.asarray(cnn), resize=resize)
    assert s.shape == (2, 4, 4, 6) and t.shape == (2, 4, 4, 3)


def test_paper_form_and_explicit_grid_in_at_loss():
    vit = tokens(2, 2 + 3 * 6, 4)  # class + distillation tokens, a 3 x 6 grid
    cnn = RNG.normal(size=(2, 3, 6, 5)).astype(np.float32)
    difference = numpy_map(numpy_grid(vit, 2, (3, 6))) - numpy_map(cnn)
    expected = 0.5 * np.mean(np.linalg.norm(difference, axis=1))
    np.testing.assert_allclose(at_loss(vit, cnn, form="paper", grid=(3, 6)), expected, rtol=1e-5)
    np.testing.assert_allclose(at_loss(vit, cnn, form="paper", prefix_tokens=2, grid=(3, 6)), expected, rtol=1e-5)


def test_gradients_finite_reach_only_patch_tokens_and_jit_matches_eager():
    vit, cnn = jnp.asarray(tokens(2, 1 + 16, 6)), jnp.asarray(RNG.normal(size=(2, 8, 8, 4)), jnp.float32)
    loss = functools.partial(at_loss, resize="interpolate")
    value, grad = jax.jit(jax.value_and_grad(loss))(vit, cnn)
    np.testing.assert_allclose(value, loss(vit, cnn), rtol=1e-6)
    assert grad.shape == vit.shape and np.all(np.isfinite(grad))
    np.testing.assert_array_equal(grad[:, 0], 0.0)  # the class token is not in the map
    assert np.all(np.abs(np.asarray(grad[:, 1:])).sum(axis=-1) > 0)
    zero = jnp.zeros_like(vit)  # an all-zero example: finite (zero) gradient, as for NHWC maps
    assert np.all(np.isfinite(jax.grad(at_loss)(zero, cnn)))


def test_at_term_of_the_objective_pairs_vit_tokens_with_cnn_stages():
    """The trainer's AT term (at_jax.losses) sums at_loss over the default pairs of token and NHWC features."""
    student = (jnp.asarray(tokens(2, 1 + 16, 6)), jnp.asarray(tokens(2, 1 + 4, 6)))
    teacher = (jnp.asarray(RNG.normal(size=(2, 8, 8, 3)), jnp.float32), jnp.asarray(RNG.normal(size=(2, 2, 2, 5)), jnp.float32))
    objective = losses.build_objective({"at_beta": 1.0})
    logits, labels = jnp.zeros((2, 3)), jnp.zeros((2,), jnp.int32)
    _, terms = objective({}, logits, student, logits, teacher, labels, 1.0)
    expected = [np.mean(np.square(numpy_map(numpy_grid(np.asarray(s), 1, (g, g))) - numpy_map(block_average(np.asarray(t), f))))
                for s, t, g, f in zip(student, teacher, (4, 2), (2, 1))]
    np.testing.assert_allclose(terms["at"], sum(expected), rtol=1e-5)
    np.testing.assert_allclose(terms["at/0"], expected[0], rtol=1e-5)


@pytest.mark.parametrize(
    "shape, kwargs, message",
    [
        ((2, 8, 4), {}, r"cannot lay 8 tokens.*prefix_tokens.*grid"),
        ((2, 17, 4), {"prefix_tokens": 2}, r"prefix_tokens=2 is not a square grid.*grid=\(h, w\)"),
        ((2, 17, 4), {"grid": (5, 4)}, r"grid=\(5, 4\) does not fit 17 tokens"),
        ((2, 17, 4), {"grid": (4, 4), "prefix_tokens": 2}, r"does not fit 17 tokens with prefix_tokens=2"),
        ((2, 17, 4), {"prefix_tokens": -1}, r"not a square grid"),
        ((2, 16), {}, r"4-D \(B, H, W, C\) activation or a 3-D \(B, N, D\) token array"),
        ((1, 2, 4, 4, 3), {}, r"4-D .* or a 3-D"),
    ],
)
def test_bad_token_shapes_raise_one_value_error(shape, kwargs, message):
    with pytest.raises(ValueError, match=message):
        attention_map(jnp.ones(shape), **kwargs)
    with pytest.raises(ValueError, match=message):
        at_loss(jnp.ones(shape), jnp.ones((2, 4, 4, 3)), **kwargs)

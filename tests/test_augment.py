"""augment_batch (reflect-pad random crop + flip) and normalize."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from at_jax.data.augment import augment_batch, normalize


def _images(count=16, height=8, width=6, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def _windows(image, pad, flips):
    """Every (dy, dx, flipped) -> crop of the reflect-padded image, computed with numpy."""
    height, width = image.shape[:2]
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    windows = {}
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[dy:dy + height, dx:dx + width]
            for flipped in flips:
                windows[(dy, dx, flipped)] = crop[:, ::-1] if flipped else crop
    return windows


def _matches(out, image, pad, flips):
    return [key for key, window in _windows(image, pad, flips).items() if np.array_equal(out, window)]


def test_shape_and_dtype_kept():
    images = _images()
    out = augment_batch(jax.random.key(0), jnp.asarray(images), pad=2, flip=True)
    assert out.shape == images.shape
    assert out.dtype == jnp.uint8


def test_no_pad_no_flip_is_identity():
    images = _images()
    out = augment_batch(jax.random.key(3), jnp.asarray(images), pad=0, flip=False)
    np.testing.assert_array_equal(np.asarray(out), images)


@pytest.mark.parametrize("flip", [False, True])
def test_crops_are_windows_of_reflect_padded_image(flip):
    images = _images(count=32)
    pad = 2
    out = np.asarray(augment_batch(jax.random.key(1), jnp.asarray(images), pad=pad, flip=flip))
    flips = (False, True) if flip else (False,)
    keys = []
    for image, augmented in zip(images, out):
        found = _matches(augmented, image, pad, flips)
        assert found, "output is not a window of the reflect-padded image"
        keys.append(found[0])
    # the random choices vary across the batch
    assert len({key[:2] for key in keys}) > 4
    if flip:
        assert {key[2] for key in keys} == {False, True}


def test_every_offset_reachable():
    images = _images(count=256, height=5, width=5)
    out = np.asarray(augment_batch(jax.random.key(7), jnp.asarray(images), pad=1, flip=False))
    offsets = {_matches(o, i, 1, (False,))[0] for o, i in zip(out, images)}
    assert offsets == {(dy, dx, False) for dy in range(3) for dx in range(3)}


def test_flip_only_flips_or_keeps_each_example():
    images = _images(count=64)
    out = np.asarray(augment_batch(jax.random.key(2), jnp.asarray(images), pad=0, flip=True))
    flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images)]
    kept = [np.array_equal(o, i) for o, i in zip(out, images)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 16 < sum(flipped) < 48


def test_randomness_is_per_example():
    image = _images(count=1)[0]
    batch = jnp.asarray(np.repeat(image[None], 64, axis=0))
    out = np.asarray(augment_batch(jax.random.key(0), batch, pad=4, flip=True))
    assert len({o.tobytes() for o in out}) > 20


def test_deterministic_per_key():
    images = jnp.asarray(_images())
    first = augment_batch(jax.random.key(5), images)
    again = augment_batch(jax.random.key(5), images)
    other = augment_batch(jax.random.key(6), images)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(again))
    assert not np.array_equal(np.asarray(first), np.asarray(other))


def test_jit_matches_eager():
    images = jnp.asarray(_images())
    compiled = jax.jit(functools.partial(augment_batch, pad=3, flip=True))
    np.testing.assert_array_equal(np.asarray(compiled(jax.random.key(9), images)),
                                  np.asarray(augment_batch(jax.random.key(9), images, pad=3)))


def test_bad_pad_rejected():
    with pytest.raises(ValueError):
        augment_batch(jax.random.key(0), jnp.asarray(_images(height=4, width=4)), pad=4)
    with pytest.raises(ValueError):
        augment_batch(jax.random.key(0), jnp.asarray(_images()), pad=-1)


def test_normalize_values_and_dtype():
    images = _images(count=4)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    expected = (images.astype(np.float64) / 255.0 - np.array(mean)) / np.array(std)
    out = normalize(jnp.asarray(images), mean, std)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-5)
    half = normalize(jnp.asarray(images), mean, std, dtype=jnp.bfloat16)
    assert half.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(half, np.float32), expected, rtol=1e-2, atol=1e-2)
    assert float(normalize(jnp.full((1, 1, 1, 3), 255, jnp.uint8), mean, std)[0, 0, 0, 2]) == \
        pytest.approx((1.0 - 0.6) / 0.3, rel=1e-6)

"""On-device augmentation and normalisation: pure jax.numpy, jit-able, used inside the train step."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp


def augment_batch(rng: jax.Array, images: jax.Array, *, pad: int = 4, flip: bool = True) -> jax.Array:
    """Random reflect-pad crop and horizontal flip, drawn independently for every example.

    For each image x of shape (H, W, C): p = reflect_pad(x, pad) (edge not repeated, like
    torch's ReflectionPad2d), (dy, dx) ~ U{0..2*pad}^2, y = p[dy:dy+H, dx:dx+W]; then with
    probability 1/2 (when `flip`) y = y[:, ::-1]. Images are (N, H, W, C); dtype is kept
    (uint8 in, uint8 out). `pad` and `flip` are static. pad=0 and flip=False is the identity.
    """
    if images.ndim != 4:
        raise ValueError(f"augment_batch expects (N, H, W, C) images, got shape {images.shape}")
    count, height, width, channels = images.shape
    if pad < 0 or pad >= min(height, width):
        raise ValueError(f"reflect padding needs 0 <= pad < min(H, W) = {min(height, width)}, got {pad}")
    crop_key, flip_key = jax.random.split(rng)
    if pad > 0:
        padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
        offsets = jax.random.randint(crop_key, (count, 2), 0, 2 * pad + 1)

        def crop(image: jax.Array, offset: jax.Array) -> jax.Array:
            return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, channels))

        images = jax.vmap(crop)(padded, offsets)
    if flip:
        flipped = jax.random.bernoulli(flip_key, 0.5, (count,))
        images = jnp.where(flipped[:, None, None, None], images[:, :, ::-1], images)
    return images


def normalize(images: jax.Array, mean: Sequence[float] | jax.Array, std: Sequence[float] | jax.Array,
              dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """(images / 255 - mean) / std per channel (last axis), computed in float32, returned in `dtype`."""
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    return ((images.astype(jnp.float32) / 255.0 - mean) / std).astype(dtype)

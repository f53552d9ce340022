"""Weakly supervised segmentation from attention maps, scored by the Jaccard index (Jetley et al. 2018, 5.3).

An attention map ``a`` (h x w, e.g. an LTPA map at 8x8 .. 32x32) becomes a segmentation of an
H x W image in three steps:

    1. upsample:  A = bilinear_resize(a, (H, W))      (half-pixel centres, like PyTorch's
                                                        ``interpolate(mode='bilinear', align_corners=False)``)
    2. binarise:  S = [ (A - min A) / (max A - min A) >= threshold ]       (min-max normalised), or
                  S = the ceil(top_fraction * H * W) largest pixels of A  (ties at the cut included)
    3. score:     J(S, M) = |S and M| / |S or M|  against the binary ground-truth mask M
                  (1 when both are empty).

Also a saliency baseline needing no model: the colour contrast of each pixel with the image mean,
``sal(x) = || I(x) - mean_y I(y) ||_2`` (Achanta et al. 2009's frequency-tuned saliency without blur).
All functions are pure jnp over leading batch axes and jit-able (sizes and options are static).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from at_jax.spatial import resize_bilinear


def upsample_bilinear(maps: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Bilinear resize of ``maps`` (..., h, w) to (..., H, W) in float32, half-pixel centres, no antialias."""
    maps = jnp.asarray(maps, jnp.float32)
    if maps.ndim < 2:
        raise ValueError(f"maps must have at least 2 axes (..., H, W), got shape {maps.shape}")
    return resize_bilinear(maps, size, axes=(-2, -1))


def _check_binarize_options(threshold: float | None, top_fraction: float | None) -> None:
    if (threshold is None) == (top_fraction is None):
        raise ValueError("give exactly one of threshold and top_fraction")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1] (maps are min-max normalised), got {threshold}")
    if top_fraction is not None and not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")


def binarize(maps: jax.Array, *, threshold: float | None = None,
             top_fraction: float | None = None) -> jax.Array:
    """Boolean foreground (..., H, W) of ``maps`` (..., H, W), each map on its own.

    ``threshold``: pixels with (a - min a) / (max a - min a) >= threshold (a constant map is all
    background unless threshold is 0). ``top_fraction``: the k = ceil(top_fraction * H * W) pixels
    with the largest values (every pixel equal to the k-th largest is included).
    """
    _check_binarize_options(threshold, top_fraction)
    maps = jnp.asarray(maps, jnp.float32)
    low = jnp.min(maps, axis=(-2, -1), keepdims=True)
    high = jnp.max(maps, axis=(-2, -1), keepdims=True)
    if threshold is not None:
        spread = high - low
        normalised = jnp.where(spread > 0, (maps - low) / jnp.where(spread > 0, spread, 1.0), 0.0)
        return normalised >= threshold
    num_pixels = maps.shape[-2] * maps.shape[-1]
    keep = min(num_pixels, max(1, math.ceil(top_fraction * num_pixels - 1e-9)))
    flat = maps.reshape(maps.shape[:-2] + (num_pixels,))
    cut = jnp.sort(flat, axis=-1)[..., num_pixels - keep]
    return maps >= cut[..., None, None]


def jaccard(prediction: jax.Array, mask: jax.Array) -> jax.Array:
    """Jaccard index (IoU) |P and M| / |P or M| over the last two axes of boolean (or 0/1) arrays.

    Returns float32 of the leading shape; 1.0 where both are empty.
    """
    prediction = jnp.asarray(prediction).astype(bool)
    mask = jnp.asarray(mask).astype(bool)
    if prediction.shape != mask.shape:
        raise ValueError(f"prediction {prediction.shape} and mask {mask.shape} differ in shape")
    intersection = jnp.sum(prediction & mask, axis=(-2, -1)).astype(jnp.float32)
    union = jnp.sum(prediction | mask, axis=(-2, -1)).astype(jnp.float32)
    return jnp.where(union > 0, intersection / jnp.where(union > 0, union, 1.0), 1.0)


def segmentation_jaccard(maps: jax.Array, masks: jax.Array, *, threshold: float | None = None,
                         top_fraction: float | None = None) -> jax.Array:
    """Upsamples attention ``maps`` (..., h, w) to the masks' size (..., H, W), binarises and scores.

    Returns the Jaccard index per map (leading shape), float32.
    """
    masks = jnp.asarray(masks)
    upsampled = upsample_bilinear(maps, masks.shape[-2:])
    return jaccard(binarize(upsampled, threshold=threshold, top_fraction=top_fraction), masks)


def color_contrast_saliency(images: jax.Array) -> jax.Array:
    """Saliency baseline: ``||I(x) - mean_y I(y)||_2`` per pixel of images (..., H, W, C) -> (..., H, W)."""
    images = jnp.asarray(images, jnp.float32)
    mean_colour = jnp.mean(images, axis=(-3, -2), keepdims=True)
    return jnp.sqrt(jnp.sum(jnp.square(images - mean_colour), axis=-1))

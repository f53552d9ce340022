"""Spatial resampling shared by the core, the models and the figures: one adaptive pool, one bilinear resize.

Both follow PyTorch so that numbers match the reference implementations:

- :func:`adaptive_avg_pool` is ``F.adaptive_avg_pool2d``: output bin ``i`` of an axis of length ``n`` pooled
  to ``m`` averages inputs ``[floor(i n / m), ceil((i + 1) n / m))`` (overlapping bins when ``m`` does not
  divide ``n``; plain non-overlapping windows when it does).
- :func:`resize_bilinear` is ``F.interpolate(mode="bilinear", align_corners=False)``: half-pixel centres,
  no antialiasing.

Only jax and numpy are imported; both functions are pure and jit-able (sizes are static).
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def adaptive_pool_matrix(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) averaging weights of PyTorch's adaptive average pooling along one axis."""
    weights = np.zeros((size_out, size_in), np.float32)
    for i in range(size_out):
        start = (i * size_in) // size_out
        end = math.ceil((i + 1) * size_in / size_out)
        weights[i, start:end] = 1.0 / (end - start)
    return weights


def adaptive_avg_pool(x: jax.Array, size: Sequence[int]) -> jax.Array:
    """Average-pools an NHWC array to spatial ``size``, exactly like ``F.adaptive_avg_pool2d`` (any sizes;
    a larger output repeats inputs, as PyTorch's bins do).

    Whole-number factors use a reshape-mean; other sizes PyTorch's adaptive bins as two small averaging
    matrices (computed at the highest matmul precision).
    """
    n, h, w, c = x.shape
    out_h, out_w = (int(s) for s in size)
    if (out_h, out_w) == (h, w):
        return x
    if h % out_h == 0 and w % out_w == 0:
        return x.reshape(n, out_h, h // out_h, out_w, w // out_w, c).mean(axis=(2, 4))
    rows = jnp.asarray(adaptive_pool_matrix(h, out_h))
    cols = jnp.asarray(adaptive_pool_matrix(w, out_w))
    return jnp.einsum("ih,jw,nhwc->nijc", rows, cols, x, precision=jax.lax.Precision.HIGHEST)


def resize_bilinear(x: jax.Array, size: Sequence[int], *, axes: tuple[int, int] = (1, 2)) -> jax.Array:
    """Bilinear resize of the two spatial ``axes`` of ``x`` to ``size`` (NHWC by default; ``axes=(-2, -1)``
    for stacks of maps (..., h, w)), like ``F.interpolate(mode='bilinear', align_corners=False)``."""
    shape = list(x.shape)
    for axis, length in zip(axes, size):
        shape[axis] = int(length)
    if tuple(shape) == tuple(x.shape):
        return x
    return jax.image.resize(x, tuple(shape), method="linear", antialias=False)


def resize_antialiased(x: jax.Array, size: int) -> jax.Array:
    """An NHWC batch of square images resized to ``size`` x ``size``: triangle (bilinear) filter, antialiased
    when shrinking (the filter widened by the scale, like PIL's bilinear ``resize`` and
    ``F.interpolate(..., antialias=True)``); computed in float32, returned in ``x``'s dtype; the identity at
    the same size."""
    n, h, w, c = x.shape
    if (h, w) == (size, size):
        return x
    resized = jax.image.resize(x.astype(jnp.float32), (n, size, size, c), method="linear", antialias=True)
    return resized.astype(x.dtype)

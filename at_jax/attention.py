"""Activation-based attention maps and the attention-transfer (AT) loss.

Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017, section 3.1. For an
activation ``A`` of one example with channels ``A_c`` (NHWC here: channels are the last axis) the
spatial attention map is one of

    F_mean^p(A) = mean_c |A_c|**p      (the official code: ``x.pow(2).mean(1)``)
    F_sum^p(A)  = sum_c  |A_c|**p      (the paper; identical to mean after normalisation)
    F_max^p(A)  = max_c  |A_c|**p

flattened to ``H*W`` values and normalised per example, ``Q / max(||Q||, eps)`` exactly like
``torch.nn.functional.normalize``. Everything is computed in float32 whatever the input dtype.

Only ``jax`` (and :mod:`at_jax.spatial`, itself pure jax) is imported; every function is pure, jit-able and differentiable.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from at_jax.spatial import adaptive_avg_pool, resize_bilinear

REDUCTIONS = ("mean", "sum", "max")
NORMALIZATIONS = ("l2", "l1", None)
RESIZE_METHODS = ("pool", "interpolate")
LOSS_FORMS = ("code", "paper")


def _check_choice(name: str, value, valid: tuple) -> None:
    if value not in valid:
        raise ValueError(f"{name} must be one of {valid!r}, got {value!r}")


def _canonical_normalize(normalize):
    """Accepts the string 'none' as an alias of None (handy from command lines)."""
    if isinstance(normalize, str) and normalize.lower() == "none":
        return None
    return normalize


def _check_activation(x, name: str) -> None:
    if jnp.ndim(x) != 4:
        raise ValueError(f"{name} must be a 4-D NHWC activation, got shape {jnp.shape(x)}")


def _abs(x: jax.Array) -> jax.Array:
    """|x| with derivative sign(x), i.e. 0 at x = 0 as in PyTorch (jnp.abs gives 1 there)."""
    return x * jax.lax.stop_gradient(jnp.sign(x))


def _abs_pow(x: jax.Array, p: float) -> jax.Array:
    """|x|**p, with exact integer powers (no log/exp) when p is a whole number."""
    if float(p).is_integer():
        power = int(p)
        return x**power if power % 2 == 0 else _abs(x) ** power
    return _abs(x) ** p


def normalize_rows(q: jax.Array, normalize: str | None = "l2", eps: float = 1e-12) -> jax.Array:
    """Per-row ``q / max(||q||, eps)`` over the last axis, like ``torch.nn.functional.normalize``.

    ``normalize`` is "l2", "l1" or None (returns ``q`` unchanged). The l2 norm is taken as
    ``sqrt(max(sum q**2, eps**2))``: the same value as ``max(||q||_2, eps)`` but with a finite
    (zero) gradient for an all-zero row, as in PyTorch.
    """
    normalize = _canonical_normalize(normalize)
    _check_choice("normalize", normalize, NORMALIZATIONS)
    if normalize is None:
        return q
    if normalize == "l2":
        squared_norm = jnp.sum(jnp.square(q), axis=-1, keepdims=True)
        denominator = jnp.sqrt(jnp.maximum(squared_norm, eps * eps))
    else:
        denominator = jnp.maximum(jnp.sum(_abs(q), axis=-1, keepdims=True), eps)
    return q / denominator


def attention_map(
    x: jax.Array,
    *,
    p: float = 2.0,
    reduce: str = "mean",
    normalize: str | None = "l2",
    eps: float = 1e-12,
) -> jax.Array:
    """Spatial attention map of an NHWC activation: (N, H, W, C) -> (N, H*W), float32.

    ``Q = reduce_c |x_c|**p`` over channels (``reduce``: "mean" | "sum" | "max"), flattened
    row-major over (H, W) (the same order as PyTorch's ``view(N, -1)`` of an NCHW map), then
    ``Q / max(||Q||, eps)`` per example (``normalize``: "l2" | "l1" | None). ``p > 0`` is a
    static Python number; the input is cast to float32 before any arithmetic.
    """
    _check_activation(x, "x")
    _check_choice("reduce", reduce, REDUCTIONS)
    normalize = _canonical_normalize(normalize)
    _check_choice("normalize", normalize, NORMALIZATIONS)
    if not float(p) > 0:
        raise ValueError(f"p must be a positive number, got {p!r}")
    x = jnp.asarray(x).astype(jnp.float32)
    powered = _abs_pow(x, p)
    if reduce == "mean":
        spatial = jnp.mean(powered, axis=-1)
    elif reduce == "sum":
        spatial = jnp.sum(powered, axis=-1)
    else:
        spatial = jnp.max(powered, axis=-1)
    flat = spatial.reshape(spatial.shape[0], -1)
    return normalize_rows(flat, normalize, eps)


def match_spatial_size(
    s: jax.Array, t: jax.Array, *, resize: str = "pool"
) -> tuple[jax.Array, jax.Array]:
    """Brings two NHWC activations to a common spatial size, ``(min(H_s, H_t), min(W_s, W_t))``.

    Whichever activation is larger along an axis is shrunk, never enlarged: ``resize="pool"``
    uses adaptive average pooling (RepDistiller's ``F.adaptive_avg_pool2d``; exact windows for
    whole-number factors, PyTorch's overlapping adaptive bins otherwise), ``"interpolate"``
    bilinear resampling (``F.interpolate(mode='bilinear', align_corners=False)``). Channel
    counts are left alone; arrays already of equal size are returned unchanged.
    """
    _check_choice("resize", resize, RESIZE_METHODS)
    _check_activation(s, "s")
    _check_activation(t, "t")
    if s.shape[0] != t.shape[0]:
        raise ValueError(f"batch sizes differ: {s.shape[0]} vs {t.shape[0]}")
    size = (min(s.shape[1], t.shape[1]), min(s.shape[2], t.shape[2]))
    shrink = adaptive_avg_pool if resize == "pool" else resize_bilinear
    return shrink(s, size), shrink(t, size)


def _safe_l2_norm(v: jax.Array) -> jax.Array:
    """||v||_2 over the last axis with gradient 0 (not NaN) at v = 0."""
    squared = jnp.sum(jnp.square(v), axis=-1)
    positive = squared > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)


def at_loss(
    s: jax.Array,
    t: jax.Array,
    *,
    p: float = 2.0,
    reduce: str = "mean",
    normalize: str | None = "l2",
    resize: str = "pool",
    form: str = "code",
) -> jax.Array:
    """Attention-transfer loss between a student and a teacher activation (NHWC), float32 scalar.

    With ``Q_s = attention_map(s)``, ``Q_t = attention_map(t)`` (``p``, ``reduce``, ``normalize``
    as in :func:`attention_map`), each of shape (N, H*W):

    - ``form="code"`` (default; official repo and RepDistiller, used for the published numbers):
      ``mean_{n,i} (Q_s - Q_t)[n, i]**2``.
    - ``form="paper"`` (eq. 2 of the paper without its beta): ``0.5 * mean_n ||Q_s[n] - Q_t[n]||_2``;
      the caller multiplies by beta (the paper's ``beta/2`` factor is the 0.5 here).

    Inputs are cast to float32 first. Different channel counts are fine. Different spatial sizes are matched on the activations
    before the maps by :func:`match_spatial_size`: ``resize="pool"`` average-pools the larger one
    down to the smaller size, ``"interpolate"`` resizes the larger one bilinearly down to it.
    """
    _check_choice("form", form, LOSS_FORMS)
    s = jnp.asarray(s).astype(jnp.float32)
    t = jnp.asarray(t).astype(jnp.float32)
    s, t = match_spatial_size(s, t, resize=resize)
    options = dict(p=p, reduce=reduce, normalize=normalize)
    difference = attention_map(s, **options) - attention_map(t, **options)
    if form == "code":
        return jnp.mean(jnp.square(difference))
    return 0.5 * jnp.mean(_safe_l2_norm(difference))

"""Activation-based attention maps and the attention-transfer (AT) loss.

Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017, section 3.1. For an
activation ``A`` of one example with channels ``A_c`` (NHWC here: channels are the last axis) the
spatial attention map is one of

    F_mean^p(A) = mean_c |A_c|**p      (the official code: ``x.pow(2).mean(1)``)
    F_sum^p(A)  = sum_c  |A_c|**p      (the paper; identical to mean after normalisation)
    F_max^p(A)  = max_c  |A_c|**p

flattened to ``H*W`` values and normalised per example, ``Q / max(||Q||, eps)`` exactly like
``torch.nn.functional.normalize``. Everything is computed in float32 whatever the input dtype.

Token arrays ``(B, N, D)`` (vision transformers) are accepted wherever an NHWC activation is: the
patch tokens are laid back on their ``h x w`` grid, ``(B, N, D) -> (B, h, w, D)`` row-major (the
order of timm's ``PatchEmbed``, ``x.flatten(2).transpose(1, 2)``), after dropping the extra tokens
(class, distillation, registers), which are assumed to be at the *front* of the sequence (the
timm / DeiT convention). Their count is ``prefix_tokens``; by default it is read off ``N`` for a
square grid (see :func:`token_grid`), or an explicit ``grid=(h, w)`` fixes it. A token map is then
identical to the map of the ``(B, h, w, D)`` array: the embedding dimension plays the channels.

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


def _perfect_square_root(n: int) -> int | None:
    """``r`` with ``r * r == n`` for a whole number ``n >= 1``, else None."""
    if n < 1:
        return None
    root = int(round(n**0.5))
    return root if root * root == n else None


def token_grid(
    num_tokens: int, *, prefix_tokens: int | None = None, grid: tuple[int, int] | None = None
) -> tuple[int, tuple[int, int]]:
    """``(prefix, (h, w))``: how ``num_tokens`` tokens split into leading extra tokens and an h x w grid.

    - ``grid=(h, w)`` given: ``prefix = num_tokens - h*w`` (``prefix_tokens``, if also given, must agree).
    - ``prefix_tokens`` given: the remaining ``num_tokens - prefix_tokens`` must be a square ``s*s``.
    - neither: ``N`` a perfect square -> 0 extra tokens; else ``N - 1`` -> 1 (class token); else
      ``N - 2`` -> 2 (class + distillation, DeiT). ``1 + s*s`` and ``2 + s*s`` are never squares, so
      this is unambiguous for square grids.

    Raises ``ValueError`` when the tokens cannot be laid out so.
    """
    if grid is not None:
        h, w = (int(v) for v in grid)
        prefix = num_tokens - h * w
        if h < 1 or w < 1 or prefix < 0 or (prefix_tokens is not None and prefix != prefix_tokens):
            raise ValueError(f"grid={tuple(grid)!r} does not fit {num_tokens} tokens"
                             + ("" if prefix_tokens is None else f" with prefix_tokens={prefix_tokens}"))
        return prefix, (h, w)
    if prefix_tokens is not None:
        side = _perfect_square_root(num_tokens - int(prefix_tokens)) if prefix_tokens >= 0 else None
        if side is None:
            raise ValueError(f"{num_tokens} tokens less prefix_tokens={prefix_tokens} is not a square grid; "
                             "give grid=(h, w) for a non-square grid")
        return int(prefix_tokens), (side, side)
    for prefix in (0, 1, 2):
        side = _perfect_square_root(num_tokens - prefix)
        if side is not None:
            return prefix, (side, side)
    raise ValueError(f"cannot lay {num_tokens} tokens on a square grid after 0, 1 or 2 prefix tokens "
                     "(class, distillation); give prefix_tokens= or grid=(h, w), "
                     "or pass a 4-D (B, H, W, C) activation")


def tokens_to_grid(
    x: jax.Array, *, prefix_tokens: int | None = None, grid: tuple[int, int] | None = None
) -> jax.Array:
    """A token array ``(B, N, D)`` as ``(B, h, w, D)``: ``x[:, prefix:].reshape(B, h, w, D)``.

    The ``prefix`` leading tokens (class, distillation, registers: the timm / DeiT convention puts
    them first) are dropped and the patch tokens laid back row-major on their grid; ``prefix`` and
    ``(h, w)`` come from :func:`token_grid`. A 4-D ``(B, H, W, C)`` array is returned unchanged
    (``prefix_tokens`` and ``grid`` only concern token arrays); any other rank is a ``ValueError``.
    """
    ndim = jnp.ndim(x)
    if ndim == 4:
        return x
    if ndim != 3:
        raise ValueError("expected a 4-D (B, H, W, C) activation or a 3-D (B, N, D) token array, "
                         f"got shape {jnp.shape(x)}")
    batch, num_tokens, dim = jnp.shape(x)
    prefix, (h, w) = token_grid(num_tokens, prefix_tokens=prefix_tokens, grid=grid)
    return x[:, prefix:].reshape(batch, h, w, dim)


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
    prefix_tokens: int | None = None,
    grid: tuple[int, int] | None = None,
) -> jax.Array:
    """Spatial attention map of an NHWC activation: (N, H, W, C) -> (N, H*W), float32.

    ``Q = reduce_c |x_c|**p`` over channels (``reduce``: "mean" | "sum" | "max"), flattened
    row-major over (H, W) (the same order as PyTorch's ``view(N, -1)`` of an NCHW map), then
    ``Q / max(||Q||, eps)`` per example (``normalize``: "l2" | "l1" | None). ``p > 0`` is a
    static Python number; the input is cast to float32 before any arithmetic.

    A token array (N, T, D) gives (N, h*w): the map of :func:`tokens_to_grid` of it (leading
    ``prefix_tokens`` dropped, the rest on the ``grid``; both default as in :func:`token_grid`).
    """
    x = tokens_to_grid(x, prefix_tokens=prefix_tokens, grid=grid)
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
    s: jax.Array,
    t: jax.Array,
    *,
    resize: str = "pool",
    prefix_tokens: int | None = None,
    grid: tuple[int, int] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Brings two NHWC activations to a common spatial size, ``(min(H_s, H_t), min(W_s, W_t))``.

    Whichever activation is larger along an axis is shrunk, never enlarged: ``resize="pool"``
    uses adaptive average pooling (RepDistiller's ``F.adaptive_avg_pool2d``; exact windows for
    whole-number factors, PyTorch's overlapping adaptive bins otherwise), ``"interpolate"``
    bilinear resampling (``F.interpolate(mode='bilinear', align_corners=False)``). Channel
    counts are left alone; arrays already of equal size are returned unchanged.

    Token arrays (N, T, D) are first laid on their grid by :func:`tokens_to_grid` (``prefix_tokens``
    and ``grid`` apply to each token input; a 4-D input ignores them), so the results are NHWC.
    """
    _check_choice("resize", resize, RESIZE_METHODS)
    s = tokens_to_grid(s, prefix_tokens=prefix_tokens, grid=grid)
    t = tokens_to_grid(t, prefix_tokens=prefix_tokens, grid=grid)
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
    prefix_tokens: int | None = None,
    grid: tuple[int, int] | None = None,
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

    Either input may be a token array (N, T, D) (a ViT block output): it is laid on its patch grid
    first (:func:`tokens_to_grid`, with ``prefix_tokens`` / ``grid`` for every token input), so a
    CNN teacher and a ViT student (or the reverse) pair directly, resized on the grid form. For two
    token inputs with different layouts, call :func:`tokens_to_grid` on each yourself.
    """
    _check_choice("form", form, LOSS_FORMS)
    s = jnp.asarray(s).astype(jnp.float32)
    t = jnp.asarray(t).astype(jnp.float32)
    s, t = match_spatial_size(s, t, resize=resize, prefix_tokens=prefix_tokens, grid=grid)
    options = dict(p=p, reduce=reduce, normalize=normalize)
    difference = attention_map(s, **options) - attention_map(t, **options)
    if form == "code":
        return jnp.mean(jnp.square(difference))
    return 0.5 * jnp.mean(_safe_l2_norm(difference))

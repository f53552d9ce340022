"""Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) inside the compiled step: pure jax.numpy, jit-able.

Each example is mixed with its partner in the batch reversed (example i with example N-1-i, as timm does),
with one ratio ``lam ~ Beta(alpha, alpha)`` per batch: mixup blends the whole images, ``lam x + (1 - lam) x'``;
CutMix pastes a box of the partner covering ``1 - lam`` of the image (centre uniform, clipped at the border;
``lam`` then recomputed from the clipped box's area). With both on, each batch takes one of the two with equal
odds. The labels mix with the same ``lam``: ``lam y + (1 - lam) y'``. Because the mixed batch is computed once,
a teacher and a student fed from it see the very same image ("consistent" distillation, Beyer et al. 2022).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def cutmix_box(key: jax.Array, height: int, width: int, lam: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(mask, lam)``: a (H, W) mask, 1 inside a box of about ``(1 - lam) H W`` pixels, and the ratio of the
    pixels outside it."""
    cut = jnp.sqrt(1.0 - lam)
    centre_y, centre_x = jax.random.uniform(key, (2,)) * jnp.asarray([height, width], jnp.float32)
    half_h, half_w = cut * height / 2, cut * width / 2
    top, bottom = jnp.clip(jnp.round(centre_y - half_h), 0, height), jnp.clip(jnp.round(centre_y + half_h), 0, height)
    left, right = jnp.clip(jnp.round(centre_x - half_w), 0, width), jnp.clip(jnp.round(centre_x + half_w), 0, width)
    rows, cols = jnp.arange(height)[:, None], jnp.arange(width)[None, :]
    mask = ((rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)).astype(jnp.float32)
    return mask, 1.0 - jnp.mean(mask)


def mix_batch(key: jax.Array, images: jax.Array, targets: jax.Array, *, mixup_alpha: float = 0.0,
              cutmix_alpha: float = 0.0) -> tuple[jax.Array, jax.Array]:
    """``(images, targets)`` mixed as the module docstring says; images (N, H, W, C) floats, targets (N, K)
    class distributions. ``mixup_alpha`` and ``cutmix_alpha`` are static; both 0 returns the inputs."""
    if not mixup_alpha and not cutmix_alpha:
        return images, targets
    choice_key, mixup_key, cutmix_key, box_key = jax.random.split(key, 4)
    partner_images, partner_targets = images[::-1], targets[::-1]
    results = []
    if mixup_alpha:
        lam = jax.random.beta(mixup_key, mixup_alpha, mixup_alpha)
        results.append((lam * images + (1 - lam) * partner_images, lam))
    if cutmix_alpha:
        mask, lam = cutmix_box(box_key, images.shape[1], images.shape[2],
                               jax.random.beta(cutmix_key, cutmix_alpha, cutmix_alpha))
        mask = mask[None, :, :, None].astype(images.dtype)
        results.append((images * (1 - mask) + partner_images * mask, lam))
    (mixed, lam), *others = results
    if others:   # both on: cutmix with probability 1/2
        use_cutmix = jax.random.bernoulli(choice_key, 0.5)
        mixed, lam = jnp.where(use_cutmix, others[0][0], mixed), jnp.where(use_cutmix, others[0][1], lam)
    lam = lam.astype(jnp.float32)
    return mixed.astype(images.dtype), lam * targets + (1 - lam) * partner_targets

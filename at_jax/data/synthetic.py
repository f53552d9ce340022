"""Random images of CIFAR shape with random labels: a deterministic stand-in for tests and benchmarks."""

from __future__ import annotations

import numpy as np

from at_jax.data.dataset import Dataset, DatasetError


def load_synthetic(seed: int = 0, *, num_train: int = 512, num_test: int = 128,
                   num_classes: int = 10, image_size: int = 32) -> Dataset:
    """Uniform uint8 noise images (N, image_size, image_size, 3) and uniform labels in [0, num_classes).

    Nothing is learnable beyond memorisation; use it to exercise shapes, speed and plumbing.
    mean = 127.5/255 and std = sqrt((256**2 - 1) / 12)/255, the moments of uniform uint8 pixels.
    Deterministic for `seed`.
    """
    if num_train < 1 or num_test < 1 or num_classes < 2 or image_size < 1:
        raise DatasetError("synthetic: need num_train >= 1, num_test >= 1, num_classes >= 2, "
                           f"image_size >= 1; got {num_train}, {num_test}, {num_classes}, {image_size}")
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in (("train", num_train), ("test", num_test)):
        arrays[f"{split}_images"] = rng.integers(
            0, 256, size=(count, image_size, image_size, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, num_classes, size=(count,), dtype=np.int32)
    mean = 127.5 / 255.0
    std = float(np.sqrt((256.0**2 - 1.0) / 12.0) / 255.0)
    return Dataset(name="synthetic", num_classes=num_classes, mean=(mean,) * 3, std=(std,) * 3,
                   pad=4, flip=True, **arrays)

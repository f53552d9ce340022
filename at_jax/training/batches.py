"""Which examples a train step sees, and the small datasets that live whole on the devices."""
from __future__ import annotations

import numpy as np

from at_jax.data.batch_order import batch_indices
from at_jax.training import sharding


def job_batch_indices(seeds: list[int], step: int, count: int, num_examples: int, batch_size: int,
                      process_slice: slice) -> np.ndarray:
    """Indices of ``count`` consecutive steps from ``step`` for every run: (count, runs, this process's part)."""
    return np.stack([np.stack([batch_indices(seed, step + offset, num_examples, batch_size)
                               for seed in seeds]) for offset in range(count)])[..., process_slice]


def device_data(dataset, eval_chunk: int, mesh) -> dict:
    """The whole dataset as replicated uint8 device arrays; the test set padded to whole chunks.

    The training images are stored one row per image, ``(N, H * W * C)``: the step gathers rows and reshapes
    them (``StepConfig.image_shape``). Stored as ``(N, H, W, C)``, XLA:TPU copied the whole set into the
    gather's tiled layout in every step (C = 3 padded to a tile: CIFAR-10's 150 MB became a 600 MB temporary,
    1.5 GiB read and written per step; BENCHMARKS.md, "compiled for TPU")."""
    num_test = len(dataset.test_labels)
    padded = -(-num_test // eval_chunk) * eval_chunk
    pad = padded - num_test
    test_images = np.concatenate([dataset.test_images,
                                  np.zeros((pad,) + dataset.test_images.shape[1:], np.uint8)])
    return sharding.replicate({
        "train_images": dataset.train_images.reshape(len(dataset.train_images), -1),
        "train_labels": dataset.train_labels.astype(np.int32),
        "test_images": test_images,
        "test_labels": np.concatenate([dataset.test_labels, np.zeros(pad, np.int32)]).astype(np.int32),
        "test_mask": np.concatenate([np.ones(num_test, np.float32), np.zeros(pad, np.float32)]),
    }, mesh)

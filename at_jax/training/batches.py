"""Which examples a train step sees, and the small datasets that live whole on the devices."""
from __future__ import annotations

import functools

import numpy as np

from at_jax.training import sharding


@functools.lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    """The example order of one epoch: a function of (seed, epoch) only."""
    order = np.random.default_rng([seed, epoch]).permutation(num_examples).astype(np.int32)
    order.flags.writeable = False
    return order


def batch_indices(seed: int, step: int, num_examples: int, batch_size: int) -> np.ndarray:
    """Global example indices of train step ``step`` (drop-remainder epochs)."""
    steps_per_epoch = num_examples // batch_size
    epoch, offset = divmod(step, steps_per_epoch)
    return epoch_permutation(seed, epoch, num_examples)[offset * batch_size:(offset + 1) * batch_size]


def job_batch_indices(seeds: list[int], step: int, count: int, num_examples: int, batch_size: int,
                      process_slice: slice) -> np.ndarray:
    """Indices of ``count`` consecutive steps from ``step`` for every run: (count, runs, this process's part)."""
    return np.stack([np.stack([batch_indices(seed, step + offset, num_examples, batch_size)
                               for seed in seeds]) for offset in range(count)])[..., process_slice]


def device_data(dataset, eval_chunk: int, mesh) -> dict:
    """The whole dataset as replicated uint8 device arrays; the test set padded to whole chunks."""
    num_test = len(dataset.test_labels)
    padded = -(-num_test // eval_chunk) * eval_chunk
    pad = padded - num_test
    test_images = np.concatenate([dataset.test_images,
                                  np.zeros((pad,) + dataset.test_images.shape[1:], np.uint8)])
    return sharding.replicate({
        "train_images": dataset.train_images, "train_labels": dataset.train_labels.astype(np.int32),
        "test_images": test_images,
        "test_labels": np.concatenate([dataset.test_labels, np.zeros(pad, np.int32)]).astype(np.int32),
        "test_mask": np.concatenate([np.ones(num_test, np.float32), np.zeros(pad, np.float32)]),
    }, mesh)

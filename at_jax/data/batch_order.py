"""Which examples a train step sees: a function of (seed, step) only, for both input paths."""
from __future__ import annotations

import functools

import numpy as np


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

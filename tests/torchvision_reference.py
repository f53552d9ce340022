"""Deterministic weights and inputs for the torchvision-import fixtures, from numpy alone (no torch needed).

Every entry of a torchvision ResNet state dict is filled from ``numpy.random.default_rng([seed, index])`` in
key order: conv / fc weights ~ N(0, sqrt(2 / fan_in)) (so activations keep their scale through the depth),
BN weight ~ U(0.5, 1.5), bias and running_mean ~ N(0, 0.1), running_var ~ U(0.5, 2) (non-trivial BN
statistics), fc bias ~ N(0, 0.1). ``tests/make_fixtures_torchvision.py`` loads these into torchvision and
stores its logits; the tests rebuild the same dict and compare at_jax's logits.
"""
import numpy as np

SEED = 7
NUM_CLASSES = 10
IMAGE_SHAPE = (2, 64, 64, 3)  # NHWC; torchvision sees it as NCHW


def fill(name: str, shape: tuple, index: int) -> np.ndarray:
    rng = np.random.default_rng([SEED, index])
    if name.endswith("num_batches_tracked"):
        return np.asarray(100, np.int64)
    if name.endswith("running_var"):
        return rng.uniform(0.5, 2.0, shape).astype(np.float32)
    if name.endswith("running_mean") or name.endswith("bias"):
        return rng.normal(0.0, 0.1, shape).astype(np.float32)
    if len(shape) == 1:  # BN weight
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    fan_in = int(np.prod(shape[1:]))
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape).astype(np.float32)


def state_dict(keys_and_shapes: list) -> dict:
    """``{key: array}`` for ``[(key, shape), ...]`` in torchvision's order."""
    return {key: fill(key, tuple(shape), index) for index, (key, shape) in enumerate(keys_and_shapes)}


def inputs() -> np.ndarray:
    return np.random.default_rng([SEED, 10_000]).normal(0.0, 1.0, IMAGE_SHAPE).astype(np.float32)

"""Weights both sides can rebuild: tests/make_fixtures_ltpa_nin.py (PyTorch) and tests/test_authors_networks.py (flax).

Each tensor is drawn from its own numpy generator, seeded by the CRC-32 of its PyTorch ``state_dict`` name, so the
fixture stores outputs and gradients but no weights (the networks have up to 20M parameters). Pure numpy.
"""
from __future__ import annotations

import zlib

import numpy as np


def reference_tensor(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """float32 values for the PyTorch tensor ``name`` of ``shape`` (OIHW convs, (out, in) linears):

    conv/linear weights N(0, 2 / fan_in); BN weights and running variances U(0.5, 1.5); every other tensor
    (biases, BN shifts, running means) N(0, 0.1^2).
    """
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    leaf = name.rsplit(".", 1)[-1]
    shape = tuple(int(size) for size in shape)
    if leaf == "weight" and len(shape) >= 2:
        values = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
    elif leaf in ("weight", "running_var"):
        values = rng.uniform(0.5, 1.5, shape)
    else:
        values = rng.normal(0.0, 0.1, shape)
    return values.astype(np.float32)


def reference_input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """An NHWC float32 image batch, N(0, 1)."""
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)

"""Helpers for tests that train several runs (experiment runner, figures) within the CPU budget.

``tiny-cnn-W``: a two-layer CNN (W = channels of the first group) that compiles in a fraction of WRN-10-1's
time. ``model(x, train) -> (logits, (g1, g2))``: g1 = relu(conv3x3_W(x)) at full resolution, g2 =
relu(bn(conv3x3_2W stride 2 (g1))) at half resolution; logits = dense(mean over positions of g2).

``compilation_cache(directory)``: JAX's persistent compilation cache for the duration of a fixture, so that
runs with the same model (seeds of one method) compile their train and eval steps once.
"""
import contextlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.experimental.compilation_cache import compilation_cache as jax_compilation_cache

from at_jax import models

NAME_PATTERN = r"tiny-cnn-(\d+)"


class TinyCNN(nn.Module):
    num_classes: int
    width: int = 4
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        x = x.astype(self.dtype)
        group1 = nn.relu(nn.Conv(self.width, (3, 3), dtype=self.dtype)(x))
        group2 = nn.Conv(2 * self.width, (3, 3), strides=2, dtype=self.dtype)(group1)
        group2 = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype)(group2))
        logits = nn.Dense(self.num_classes, dtype=self.dtype)(jnp.mean(group2, axis=(1, 2)))
        return logits.astype(jnp.float32), (group1, group2)


def register_tiny_cnn() -> None:
    """Registers ``tiny-cnn-W`` once per process."""
    try:
        models.create("tiny-cnn-1", 2)
    except ValueError:
        models.register(NAME_PATTERN, "tiny-cnn-W (tests only)")(
            lambda match, num_classes, **kwargs: TinyCNN(num_classes, width=int(match.group(1)), **kwargs))


@contextlib.contextmanager
def compilation_cache(directory: str):
    """Turns JAX's persistent compilation cache on (in ``directory``) inside the block, then back as it was."""
    options = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
               "jax_persistent_cache_min_entry_size_bytes")
    saved = {name: getattr(jax.config, name) for name in options}
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax_compilation_cache.reset_cache()
    try:
        yield
    finally:
        for name, value in saved.items():
            jax.config.update(name, value)
        jax_compilation_cache.reset_cache()

"""at_jax: attention transfer (Zagoruyko & Komodakis, ICLR 2017) in JAX/Flax.

The functional core, re-exported: pure, jit-able functions on NHWC arrays.
"""
from at_jax.attention import attention_map, at_loss
from at_jax.losses import cross_entropy, kd_loss, factt_loss

__version__ = "0.1.0"

__all__ = [
    "attention_map",
    "at_loss",
    "cross_entropy",
    "kd_loss",
    "factt_loss",
]

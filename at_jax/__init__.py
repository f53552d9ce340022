"""at_jax: attention transfer (Zagoruyko & Komodakis, ICLR 2017) in JAX/Flax.

The functional core, re-exported: pure, jit-able functions on NHWC arrays.
"""
from at_jax import xla_cpu as _xla_cpu

# Before anything can start a JAX backend: XLA reads XLA_FLAGS once (at_jax/xla_cpu.py).
_xla_cpu.apply_cpu_flags()

from at_jax import models  # noqa: E402
from at_jax.attention import at_loss, attention_map  # noqa: E402
from at_jax.gradient import (flip_symmetry_loss, gradient_at_loss, input_gradient,  # noqa: E402
                             input_gradient_penalty)
from at_jax.losses import build_objective, cross_entropy, factt_loss, kd_loss  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "attention_map", "at_loss", "kd_loss", "cross_entropy", "factt_loss", "build_objective",
    "input_gradient", "gradient_at_loss", "input_gradient_penalty", "flip_symmetry_loss", "models",
]

"""at_jax: attention transfer (Zagoruyko & Komodakis, ICLR 2017) in JAX/Flax.

The functional core, re-exported: pure, jit-able functions on NHWC arrays. Importing at_jax changes no
process setting (the XLA:CPU flags are applied by the entry points; see at_jax/training/cpu_defaults.py).
"""
from typing import Any

from at_jax import losses, models
from at_jax.attention import at_loss, attention_map
from at_jax.gradient import flip_symmetry_loss, gradient_at_loss, input_gradient, input_gradient_penalty
from at_jax.losses import build_objective, cross_entropy, factt_loss, kd_loss, register_term

__version__ = "0.1.0"


def load_model(workdir: str) -> tuple[Any, dict]:
    """``(model, variables)`` of a finished run in ``workdir`` (any at_jax run, or an imported teacher):
    ``model.apply(variables, x_nhwc, train=False) -> (logits, features)``."""
    from at_jax.training.checkpoint import load_model as load  # pylint: disable=import-outside-toplevel
    return load(workdir)


def train(config: Any, workdir: str) -> dict:
    """Trains ``config`` (a ConfigDict, e.g. from :func:`get_config`; None = the embedded default) in ``workdir``
    as ``python -m at_jax.train`` does, resuming, and returns the summary (the default pipeline: the summaries
    of teacher and students by name). See :mod:`at_jax.experiments.notebook`."""
    from at_jax.experiments.notebook import train as run  # pylint: disable=import-outside-toplevel
    return run(config, workdir)


def get_config(path: str | None = None) -> Any:
    """The locked ConfigDict of a config file (``"configs/X.py[:ARG]"``; None: the embedded default)."""
    from at_jax.experiments.notebook import get_config as load  # pylint: disable=import-outside-toplevel
    return load(path)


__all__ = [
    "attention_map", "at_loss", "kd_loss", "cross_entropy", "factt_loss", "build_objective",
    "input_gradient", "gradient_at_loss", "input_gradient_penalty", "flip_symmetry_loss", "models",
    "losses", "register_term", "load_model", "train", "get_config",
]

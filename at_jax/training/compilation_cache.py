"""A persistent XLA compilation cache, so that a restarted or repeated run does not compile again.

``config.compilation_cache_dir``: "auto" (default) uses ``$JAX_COMPILATION_CACHE_DIR`` when set, else
``$XDG_CACHE_HOME/at_jax/jax_compilation_cache`` (``~/.cache/...``); a path (local or gs://) uses that
folder; "" turns the cache off. Programs that took at least ``jax_persistent_cache_min_compile_time_secs``
(JAX's default, 1 s) to compile are stored. BENCHMARKS.md ("Start-up with the compilation cache") gives the
time it saves.
"""
from __future__ import annotations

import os

import jax
from absl import logging


def cache_directory(setting: str) -> str | None:
    """The folder a ``compilation_cache_dir`` setting names (None = no cache)."""
    if not setting:
        return None
    if setting != "auto":
        return setting
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.environ["JAX_COMPILATION_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "at_jax", "jax_compilation_cache")


def use_compilation_cache(setting: str) -> str | None:
    """Points JAX's persistent compilation cache at :func:`cache_directory` (before the first compile)."""
    directory = cache_directory(setting)
    if directory is not None and jax.config.jax_compilation_cache_dir != directory:
        jax.config.update("jax_compilation_cache_dir", directory)
        logging.debug("compilation cache: %s", directory)
    return directory

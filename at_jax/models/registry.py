"""Model registry: ``create(name, num_classes, **kw)`` over name patterns.

Each model file registers a regular expression for its names with :func:`register`; the builder
receives the regex match, ``num_classes`` and the keyword arguments and returns a flax module
whose ``__call__(x, train: bool)`` returns ``(logits, features)``.
"""
from __future__ import annotations

import re
from typing import Callable

import flax.linen as nn

from at_jax.errors import ConfigError

Builder = Callable[..., nn.Module]
_REGISTRY: list[tuple[re.Pattern, Builder, str]] = []


def register(pattern: str, description: str) -> Callable[[Builder], Builder]:
    """Registers ``builder(match, num_classes, **kw)`` for names that fully match ``pattern``."""

    def decorator(builder: Builder) -> Builder:
        _REGISTRY.append((re.compile(pattern), builder, description))
        return builder

    return decorator


def available() -> list[str]:
    """Human-readable descriptions of the valid model names."""
    return [description for _, _, description in _REGISTRY]


def create(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Builds the model called ``name``; raises :class:`at_jax.errors.ConfigError` (a ``ValueError``) naming
    the valid names otherwise, or saying which option of the name or keywords is invalid."""
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    for pattern, builder, _ in _REGISTRY:
        match = pattern.fullmatch(name)
        if match:
            try:
                return builder(match, num_classes, **kwargs)
            except (ValueError, TypeError) as error:  # the builders check their name and keyword options
                raise ConfigError(f"model {name!r}: {error}") from None
    raise ConfigError(f"unknown model {name!r}; valid names: {', '.join(available())}")

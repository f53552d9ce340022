"""Model registry: ``create(name, num_classes, **kw)`` over name patterns.

Each model file registers a regular expression for its names with :func:`register`. What is registered is
either a builder ``builder(match, num_classes, **kw) -> module`` or a flax module class, built as
``Module(num_classes=num_classes, **kw)`` (keywords it has no field for are refused; ``dtype`` is passed
only when it has that field). Zoo modules' ``__call__(x, train: bool)`` returns ``(logits, features)``.

A user registers a model the same way from any Python file, typically the config file that names it
(README, "Your own network"). Such a module may return logits only; :func:`create` returns it wrapped in
:class:`at_jax.models.tap.Network`, which gives it the zoo's interface. The file a user model was registered
from is recorded (:func:`source_of`) and saved in a run's ``config.json``, so that a later process (a
student loading this run as its teacher, a figure) registers it again with :func:`load_source`.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable

import flax.linen as nn

from at_jax.errors import ConfigError
from at_jax.user_files import caller_file, run_user_file

Builder = Callable[..., nn.Module]


@dataclasses.dataclass(frozen=True)
class Entry:
    pattern: re.Pattern
    builder: Builder
    description: str
    source: str = ""    # the file a user model was registered from; "" for the zoo


_REGISTRY: list[Entry] = []


def _module_builder(module_class: type) -> Builder:
    """A builder for a flax module class: ``num_classes`` and the keywords become its fields."""
    fields = {field.name for field in dataclasses.fields(module_class)}

    def build(match, num_classes: int, **kwargs):
        del match
        if "dtype" not in fields:
            kwargs.pop("dtype", None)
        unknown = sorted(set(kwargs) - fields)
        if unknown:
            raise TypeError(f"{module_class.__name__} has no field {', '.join(unknown)}")
        return module_class(**({"num_classes": num_classes} if "num_classes" in fields else {}), **kwargs)

    return build


def register(pattern: str, description: str = "") -> Callable[[Any], Any]:
    """Registers a builder ``builder(match, num_classes, **kw)`` or a flax module class for the names that
    fully match ``pattern`` (a regular expression). Registering a pattern again replaces the earlier entry
    (a config file loaded twice); a pattern that takes a zoo model's name is refused."""

    source = caller_file()

    def decorator(registered: Any) -> Any:
        is_module = isinstance(registered, type) and issubclass(registered, nn.Module)
        entry = Entry(re.compile(pattern), _module_builder(registered) if is_module else registered,
                      description or pattern, source)
        for index, existing in enumerate(_REGISTRY):
            if existing.pattern.pattern == pattern:
                if not existing.source and source:
                    raise ConfigError(f"model pattern {pattern!r} is at_jax's own; register under another name")
                _REGISTRY[index] = entry
                return registered
        _REGISTRY.append(entry)
        return registered

    return decorator


def available() -> list[str]:
    """Human-readable descriptions of the valid model names."""
    return [entry.description for entry in _REGISTRY]


def _entry(name: str) -> tuple[Entry, re.Match] | None:
    for entry in _REGISTRY:
        match = entry.pattern.fullmatch(name)
        if match:
            return entry, match
    return None


def source_of(name: str) -> str:
    """The file that registered model ``name`` when a user did; "" for the zoo (or an unknown name)."""
    found = _entry(name)
    return found[0].source if found else ""


def load_source(path: str) -> None:
    """Runs the Python file ``path`` (a config file that registers models) so that its models exist here."""
    run_user_file(path, "model")


def create(name: str, num_classes: int, **kwargs) -> Any:
    """Builds the model called ``name``; raises :class:`at_jax.errors.ConfigError` (a ``ValueError``) naming
    the valid names otherwise, or saying which option of the name or keywords is invalid."""
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    found = _entry(name)
    if found is None:
        raise ConfigError(f"unknown model {name!r}; valid names: {', '.join(available())}")
    entry, match = found
    try:
        module = entry.builder(match, num_classes, **kwargs)
    except (ValueError, TypeError) as error:  # the builders check their name and keyword options
        raise ConfigError(f"model {name!r}: {error}") from None
    if entry.source:
        from at_jax.models.tap import Network  # pylint: disable=import-outside-toplevel
        return Network(module, name=name)
    return module

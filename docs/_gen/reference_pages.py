"""The generated reference pages, by their path in the site: what the mkdocs hook adds (hooks.py)."""
from __future__ import annotations

import importlib
import pathlib
from typing import Callable

import api_page
import cli_flags
import cli_page
import config_comments
import config_page
import losses_page
import models_page

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG_SOURCE = ROOT / "at_jax" / "default_config.py"


def config_reference() -> str:
    """The config keys' page; raises config_page.UndocumentedKeys when a key has no comment."""
    default_config = importlib.import_module("at_jax.default_config")
    return config_page.config_page(CONFIG_SOURCE.read_text(encoding="utf-8"), default_config.get_config())


def cli_reference() -> str:
    modules = cli_flags.entry_points(ROOT / "at_jax")
    return cli_page.cli_page(cli_flags.collect_in_subprocess(modules, ROOT))


def models_reference() -> str:
    registry = importlib.import_module("at_jax.models.registry")
    importlib.import_module("at_jax.models")     # the zoo registers its names on import (user models: not here)
    zoo = [entry for entry in registry._REGISTRY if not entry.source]  # pylint: disable=protected-access
    return models_page.models_page(zoo)


def losses_reference() -> str:
    losses = importlib.import_module("at_jax.losses")
    comments = config_comments.key_comments(CONFIG_SOURCE.read_text(encoding="utf-8"))
    builtin = [term for term in losses.registered_terms() if term.builtin]   # not terms a test registered
    return losses_page.losses_page(builtin, comments)


def api_reference() -> str:
    return api_page.api_page(importlib.import_module("at_jax"))


PAGES: dict[str, Callable[[], str]] = {
    "reference/api.md": api_reference,
    "reference/models.md": models_reference,
    "reference/losses.md": losses_reference,
    "reference/config.md": config_reference,
    "reference/cli.md": cli_reference,
}


def generated_pages() -> dict[str, str]:
    """Site path -> Markdown of every generated page."""
    return {path: make() for path, make in PAGES.items()}

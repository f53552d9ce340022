"""The API reference: every public name of ``at_jax`` (its ``__all__``), grouped by the module defining it."""
from __future__ import annotations

import inspect
import pathlib
from typing import Any

from md_text import code, first_sentence

INTRO = """# `at_jax`

Every public name of the package (`at_jax.__all__`), generated when the site is built and grouped by the
module that defines it. Activations are NHWC (or `(N, T, D)` tokens); every function here is pure and
jit-able. The subpackages have pages of their own: [Models](models.md), [Loss terms](losses.md).
"""

#: Subpackages in ``__all__`` documented on their own pages.
SUBPACKAGE_PAGES = {"models": "models.md", "losses": "losses.md"}
#: Functions of ``__init__`` that share their name with an entry point's module (griffe documents the module
#: under that path): name -> the function they call, documented under the package's name instead.
SHADOWED = {"train": "at_jax.experiments.notebook.train"}


class ShadowedName(ValueError):
    """A public function whose path the static reference resolves to a module of the same name."""


def entry(package: Any, name: str) -> str:
    """The mkdocstrings directive of ``package.name``."""
    path = f"{package.__name__}.{name}"
    if name in SHADOWED:
        path = f"{SHADOWED[name]}\n    options:\n      heading: {package.__name__}.{name}\n" \
               f"      toc_label: {name}"
    elif (pathlib.Path(package.__file__).parent / f"{name}.py").exists():
        raise ShadowedName(f"{package.__name__}.{name} is also the module {name}.py: add it to SHADOWED "
                           "(docs/_gen/api_page.py) with the function it calls")
    else:
        path += "\n    options:"
    return f"::: {path}\n      heading_level: 3"


def defining_module(package: Any, name: str) -> str:
    """The module that defines ``package.name`` ("" for a subpackage; the package itself for its own
    functions, e.g. ``at_jax.train`` which is also an entry point's module name)."""
    value = getattr(package, name)
    if name in SUBPACKAGE_PAGES:
        return ""
    if inspect.ismodule(value):      # at_jax.train once the entry point was imported: the function of __init__
        return package.__name__
    return getattr(value, "__module__", package.__name__)


def api_page(package: Any) -> str:
    """The page: per defining module, its first docstring line and a ``::: at_jax.NAME`` entry per name."""
    groups: dict[str, list[str]] = {}
    for name in package.__all__:
        groups.setdefault(defining_module(package, name), []).append(name)
    parts = [INTRO]
    for module_name, names in groups.items():
        if module_name:
            summary = first_sentence(inspect.getdoc(__import__(module_name, fromlist=["_"])))
            parts += [f"## From {code(module_name)}\n\n{summary}", *(entry(package, name) for name in names)]
    links = [f"[{code(package.__name__ + '.' + name)}]({SUBPACKAGE_PAGES[name]})" for name in groups.get("", [])]
    if links:
        parts.append("## Subpackages\n\n" + ", ".join(links))
    return "\n\n".join(parts) + "\n"

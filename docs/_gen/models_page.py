"""The model reference: every name pattern of the model registry, its module class and its options.

A zoo builder checks its keyword options with ``check_module_kwargs(ModuleClass, kwargs, reserved=(...))``:
the options are the module's dataclass fields less the ``reserved`` ones, which the name fixes. Options a
builder takes itself (``kwargs.pop("cra_grid", ...)``) are named in the registry's description.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from typing import Any

from md_text import code, literal, table

INTRO = """# Models

Every model name `at_jax.models.create(name, num_classes, **options)` knows, generated from the registry when
the site is built (`config.model`, `config.teacher.model`; `python -m at_jax.inspect --model=NAME` lists a
model's layers). Options go in `config.model_kwargs` (the teacher's in `config.teacher.model_kwargs`); a name
fixes some fields (e.g. the depth of `wrn-16-1`), the others are the options below. Every zoo module's
`__call__(x, train)` returns `(logits, features)`. Register your own network with
`at_jax.models.register` (see the guide *Your network*).
"""

API = """## The registry API

::: at_jax.models.create

::: at_jax.models.register

::: at_jax.models.available
"""


def _builder_check(builder: Any) -> tuple[type | None, tuple[str, ...], dict[str, Any]]:
    """(module class, reserved fields, option defaults the builder sets) read from the builder's source."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(builder)))
    except (OSError, TypeError):
        return None, (), {}
    module_class, reserved, defaults = None, (), {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", getattr(node.func, "attr", ""))
        if name == "check_module_kwargs" and node.args and isinstance(node.args[0], ast.Name):
            module_class = builder.__globals__.get(node.args[0].id)
            keywords = {keyword.arg: keyword.value for keyword in node.keywords}
            reserved = ast.literal_eval(keywords["reserved"]) if "reserved" in keywords else ()
        elif name == "setdefault" and len(node.args) == 2 and isinstance(node.args[0], ast.Constant):
            try:
                defaults[node.args[0].value] = repr(ast.literal_eval(node.args[1]))
            except ValueError:   # computed from the name
                defaults[node.args[0].value] = None
    return module_class, tuple(reserved), defaults


def _option(field: dataclasses.Field, overrides: dict[str, str | None]) -> str:
    """``name=default`` of one option; the builder's default first (None: it follows from the name)."""
    if field.name in overrides:
        value = overrides[field.name]
        return code(f"{field.name}=...") + " (from the name)" if value is None else code(f"{field.name}={value}")
    if field.default is dataclasses.MISSING:
        return code(field.name) + " (required)"
    default = field.default
    return code(f"{field.name}={default.__name__ if isinstance(default, type) else repr(default)}")


def options(builder: Any) -> list[str]:
    """The options of a zoo builder's module, ``name=default`` each, as Markdown."""
    module_class, reserved, overrides = _builder_check(builder)
    if module_class is None or not dataclasses.is_dataclass(module_class):
        return []
    return [_option(field, overrides) for field in dataclasses.fields(module_class)
            if field.init and field.name not in ("parent", "name", "num_classes", *reserved)]


def entry_row(entry: Any) -> tuple[str, ...]:
    """One table row: the names, the module class (a link to its section), the options with defaults."""
    module_class = _builder_check(entry.builder)[0]
    where = "—"
    if module_class is not None:
        where = f"[{code(module_class.__name__)}][{module_class.__module__}.{module_class.__name__}]"
    text = ", ".join(options(entry.builder)) or "—"
    return literal(entry.description), where, text


def _class_path(builder: Any) -> str:
    module_class = _builder_check(builder)[0]
    return f"{module_class.__module__}.{module_class.__name__}" if module_class is not None else ""


def models_page(entries: list[Any]) -> str:
    """The page for registry entries (objects with ``description`` and ``builder``)."""
    classes = list(dict.fromkeys(path for path in map(_class_path, (entry.builder for entry in entries)) if path))
    sections = [f"::: {path}\n    options:\n      heading_level: 3" for path in classes]
    parts = [INTRO, table(("Names", "Module", "Options (default)"), [entry_row(entry) for entry in entries]), API,
             "## The modules", *sections]
    return "\n\n".join(parts) + "\n"

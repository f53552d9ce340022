"""Markdown building blocks of the generated reference pages: code spans, literal text, tables, docstrings."""
from __future__ import annotations

import html
import inspect
import re

_MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]|{}])")


def code(value: object) -> str:
    """``value`` as one inline code span, whatever backticks or pipes it holds (pipes escaped for tables)."""
    text = " ".join(str(value).split())
    ticks = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}".replace("|", "\\|")


def literal(text: str) -> str:
    """Plain text (a source comment) shown as written: one line, no Markdown or HTML interpretation."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", html.escape(" ".join(text.split()), quote=False))


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """A Markdown table; cells are Markdown already (see :func:`code`, :func:`literal`)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell or " " for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def anchor(name: str) -> str:
    """An empty HTML element with the id ``name``, to link to a table row."""
    return f'<span id="{html.escape(name)}"></span>'


def docstring(text: str | None) -> str:
    """A reStructuredText-flavoured docstring as Markdown: ``literal`` spans and indented blocks already read
    the same; a paragraph ending in ``::`` introduces a code block, so it ends in ``:`` instead. Cross-reference
    roles (``:func:`x```) are resolved on the rendered page (rst_roles.py)."""
    cleaned = inspect.cleandoc(text or "")
    return re.sub(r"::(\n\n|$)", r":\1", cleaned)


def first_sentence(text: str | None) -> str:
    """The docstring's first paragraph as one line."""
    paragraph = inspect.cleandoc(text or "").split("\n\n")[0]
    return " ".join(paragraph.split())

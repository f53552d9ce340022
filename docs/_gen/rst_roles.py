"""Sphinx cross-reference roles in rendered docstrings (``:func:`at_jax.at_loss```) as links.

at_jax's docstrings name other objects with Sphinx roles; Markdown renders ``:func:`x``` as the text
``:func:`` and a code span. This turns each into an optional mkdocs-autorefs reference: a link where the site
documents the object, plain code otherwise. ``~a.b.c`` shows ``c``, as in Sphinx.
"""
from __future__ import annotations

import html
import re

ROLE = re.compile(r":(?:py:)?(?:func|meth|class|mod|data|attr|exc|obj|const):<code>(~?)([\w.]+)(\(\))?</code>")


def _reference(match: re.Match) -> str:
    short, identifier, call = match.group(1), match.group(2), match.group(3) or ""
    title = identifier.rsplit(".", 1)[-1] if short else identifier
    return (f'<autoref identifier="{html.escape(identifier)}" optional>'
            f"<code>{html.escape(title)}{call}</code></autoref>")


def link_roles(page_html: str) -> str:
    """``page_html`` with every rendered role replaced by an optional cross-reference."""
    return ROLE.sub(_reference, page_html)

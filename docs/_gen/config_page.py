"""The configuration reference: every key of ``get_config()``, its default and its meaning (config_comments.py).

A key without a comment is an error (:class:`UndocumentedKeys`), so the site does not build until it has one.
"""
from __future__ import annotations

import json
from typing import Any

from config_comments import KeyComment, key_comments, undocumented
from md_text import anchor, code, literal, table

INTRO = """# Configuration keys

Every key of the embedded default configuration, `at_jax/default_config.py`, with its default and its
meaning, generated from the file's comments when the site is built. Config files under `configs/` start from
this configuration (`get_config()`) and change some keys; the command line overrides any key:

```bash
python -m at_jax.train --workdir=runs/demo --config.loss.at_beta=1000 --config.optimizer.name=adamw
```

A key's meaning is its trailing comment, or the comment lines directly above its group of keys (shown with
the group's first key). Datasets take further `dataset.*` options of their own (the keyword options of their
loader); models take options under `model_kwargs` (see [Models](models.md)).
"""


class UndocumentedKeys(ValueError):
    """Keys of the config without a comment in its source."""


def is_section(value: Any) -> bool:
    """A non-empty group of keys (an empty ConfigDict is a key whose default is ``{}``)."""
    return hasattr(value, "items") and len(value) > 0


def leaves(config: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> default of every key that is not a section, sections' keys included."""
    found = {}
    for name, value in config.items():
        if is_section(value):
            found.update(leaves(value, f"{prefix}{name}."))
        else:
            found[f"{prefix}{name}"] = value
    return found


def default_text(value: Any) -> str:
    """A default as one writes it in a config file."""
    if hasattr(value, "items"):
        return "{}"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def meaning(comment: KeyComment, sections: set[str]) -> str:
    """A key's table text: its own comment, after the group note when the note stands right above it; for the
    other keys a note covers, a pointer to the note (the section's text, or the group's first key)."""
    if comment.note and comment.note_key == comment.key:
        return literal(f"{comment.note} {comment.own}")
    if comment.note and not comment.own:
        if comment.note_key in sections:
            return "See the section's note above."
        return f"See [{code(comment.note_key)}](#{comment.note_key})."
    return literal(comment.own)


def section_text(section: str, comments: dict[str, KeyComment]) -> str:
    """The comment on a section's own line (``config.loss = ConfigDict()``), if any."""
    comment = comments.get(section)
    if comment is None:
        return ""
    return literal(f"{comment.note if comment.note_key == section else ''} {comment.own}".strip())


def _section_of(key: str, sections: set[str]) -> str:
    parent = key.rpartition(".")[0]
    return parent if parent in sections else ""


def render(config: Any, comments: dict[str, KeyComment]) -> str:
    """The page: the intro, then per section (top level first) its note and a table of its keys."""
    defaults = leaves(config)
    sections = {key.rpartition(".")[0] for key in defaults if "." in key}
    order = sorted(defaults, key=lambda key: comments[key].line)
    parts = [INTRO]
    for section in [""] + sorted(sections, key=lambda name: comments[name].line if name in comments else 0):
        keys = [key for key in order if _section_of(key, sections) == section]
        parts.append(f"## {code(section)}" if section else "## Top-level keys")
        parts.append(section_text(section, comments) if section else "")
        rows = [(anchor(key) + code(key), code(default_text(defaults[key])), meaning(comments[key], sections))
                for key in keys]
        parts.append(table(("Key", "Default", "Meaning"), rows))
    return "\n\n".join(part for part in parts if part) + "\n"


def config_page(source: str, config: Any) -> str:
    """The page for ``config`` (the value of ``get_config()`` in ``source``); raises
    :class:`UndocumentedKeys` naming every key without a comment."""
    comments = key_comments(source)
    problems = undocumented(list(leaves(config)), comments)
    if problems:
        raise UndocumentedKeys("config keys without a comment in get_config():\n  " + "\n  ".join(problems))
    return render(config, comments)

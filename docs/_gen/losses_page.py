"""The loss reference: every registered objective term (the registry in at_jax/losses/terms.py) and the API of
:mod:`at_jax.losses`."""
from __future__ import annotations

from typing import Any

from config_comments import KeyComment
from md_text import code, literal, table

INTRO = """# Loss terms

The student's objective is its cross-entropy plus every registered term whose weight (a `loss.*` key of the
config, 0 = off) is positive; each term is logged as `train/<name>` in `metrics.jsonl`. The table is generated
from the registry (`at_jax.losses.registered_terms()`) when the site is built. Add your own term with
[`register_term`][at_jax.losses.terms.register_term]: its weight is the key `loss.<name>_beta`.
"""


def how_it_enters(term: Any) -> str:
    """How the term's value enters the total, in words."""
    if term.replaces_ce:
        return "mixes with the cross-entropy: `w * value + (1 - w) * CE`"
    text = "adds `w * value`"
    if term.scheduled:
        text += ", `w` following [`loss.beta_schedule`](config.md#loss.beta_schedule)"
    return text


def term_row(term: Any, comments: dict[str, KeyComment]) -> tuple[str, ...]:
    """One table row: name, weight key (linked to the config page), what it needs, how it enters, meaning."""
    key = f"loss.{term.weight_key}"
    comment = comments.get(key)
    meaning = literal(" ".join(part for part in (comment.note, comment.own) if part)) if comment else ""
    needs = [text for text, applies in (("teacher", term.needs_teacher), ("input gradients", term.input_gradient),
                                        ("paired features", term.pairs_features)) if applies]
    weight = f"[{code(key)}](config.md#{key})" if comment else code(key)
    return code(term.name), literal(term.table_label), weight, ", ".join(needs) or "—", how_it_enters(term), meaning


def losses_page(terms: list[Any], comments: dict[str, KeyComment]) -> str:
    """The page for ``terms`` (``registered_terms()``), with the config comments of their weight keys."""
    rows = [term_row(term, comments) for term in terms]
    header = ("Term", "In tables", "Weight", "Uses", "Enters the total", "The weight key's comment")
    return "\n\n".join([INTRO, table(header, rows), "## `at_jax.losses`", "::: at_jax.losses\n    options:\n"
                        "      show_root_heading: false\n      show_root_toc_entry: false\n      heading_level: 3"]) + "\n"

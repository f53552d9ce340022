"""The command-line reference: every ``python -m at_jax.X`` entry point, its docstring and its flags."""
from __future__ import annotations

import json

from md_text import code, docstring, literal, table

INTRO = """# Command line

Every `python -m at_jax.X` command, generated from the modules when the site is built: the module's own
description, then its flags (`--name=value`). Commands built on absl also take absl's own flags (`--help`,
`--helpfull`, `--verbosity=N`, ...). User mistakes end every command with one line `at_jax: error: ...` on
stderr and exit code 2.
"""

CONFIG_OVERRIDES = (" Then `--config.KEY=VALUE` overrides any key of that config (see "
                    "[Configuration keys](config.md)).")


def _default(value: object) -> str:
    return "—" if value is None or value == [] else code(json.dumps(value) if isinstance(value, str) else value)


def _kind(option: dict) -> str:
    if option.get("choices"):
        return "one of " + ", ".join(code(choice) for choice in option["choices"])
    return {"config object": "config file", "string enum": "string"}.get(option.get("type", ""),
                                                                         option.get("type", ""))


def absl_rows(flags: list[dict]) -> list[tuple[str, ...]]:
    """Table rows of absl flags: ``--[no]name`` for booleans, a note on ``--config.KEY`` overrides."""
    rows = []
    for flag in flags:
        name = f"--[no]{flag['name']}" if flag["boolean"] else f"--{flag['name']}"
        meaning = literal(flag["help"]) + (CONFIG_OVERRIDES if flag["type"] == "config object" else "")
        rows.append((code(name), _kind(flag), _default(flag["default"]), meaning))
    return rows


def argparse_rows(options: list[dict]) -> list[tuple[str, ...]]:
    """Table rows of an argparse parser's options (required ones say so; repeatable ones too)."""
    rows = []
    for option in options:
        notes = [text for text, applies in (("Required.", option["required"]),
                                            ("Repeatable.", option["repeatable"])) if applies]
        kind = "switch" if option["flag"] else _kind(option) or "value"
        default = "—" if option["flag"] or option["required"] else _default(option["default"])
        rows.append((code(option["name"]), kind, default, " ".join([literal(option["help"]), *notes]).strip()))
    return rows


HEADER = ("Flag", "Kind", "Default", "Meaning")


def command_section(module: str, found: dict) -> str:
    """One command: heading, docstring, flag tables (one per argparse subcommand)."""
    parts = [f"## {code('python -m ' + module)}", docstring(found["doc"])]
    if found["flags"]:
        parts.append(table(HEADER, absl_rows(found["flags"])))
    for parser in found["parsers"]:
        parts.append(f"**{code(parser['prog'])}**: {literal(parser['description'])}")
        parts.append(table(HEADER, argparse_rows(parser["options"])))
    if not found["flags"] and not found["parsers"]:
        parts.append("No flags.")
    return "\n\n".join(part for part in parts if part)


def cli_page(collected: dict[str, dict]) -> str:
    """The page for :func:`cli_flags.collect`'s result, commands in the order given."""
    return "\n\n".join([INTRO, *(command_section(module, found) for module, found in collected.items())]) + "\n"

"""What each config key means, read from the comments of a ``get_config()`` source.

A key's assignment (``config.a.b = value``) is documented by

- its own trailing comment (``config.seed = 0  # the run seed``), or
- a *note*: the block of comment lines directly above a run of assignments (no blank line between). The note
  covers the assignments below it down to the first one with a trailing comment of its own (which shows
  both when it is the first below the note), a blank line or the next comment block.

A key documented by neither is *undocumented*; :func:`undocumented` lists them and the reference build fails.
"""
from __future__ import annotations

import ast
import dataclasses
import io
import tokenize


@dataclasses.dataclass(frozen=True)
class KeyComment:
    """The comments of one assignment: ``own`` (trailing), ``note`` (the block above its run) and the key
    whose line the note stands above (``note_key``: the run's first assignment)."""
    key: str
    line: int
    own: str = ""
    note: str = ""
    note_key: str = ""

    @property
    def documented(self) -> bool:
        return bool(self.own or self.note)


def _comments_by_line(source: str) -> tuple[dict[int, str], set[int]]:
    """Comment text by line number, and the numbers of the lines that hold nothing but a comment."""
    comments, alone = {}, set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
            if not token.line[:token.start[1]].strip():
                alone.add(token.start[0])
    return comments, alone


def _dotted(target: ast.expr, root: str) -> str | None:
    """``config.a.b`` -> ``"a.b"`` when the attribute chain starts at the name ``root``; else None."""
    parts = []
    while isinstance(target, ast.Attribute):
        parts.append(target.attr)
        target = target.value
    if isinstance(target, ast.Name) and target.id == root and parts:
        return ".".join(reversed(parts))
    return None


def _function(tree: ast.Module, name: str) -> ast.FunctionDef:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise ValueError(f"no function {name}() in the config source")


def _note_above(line: int, comments: dict[int, str], alone: set[int]) -> str:
    """The block of comment-only lines that ends right above ``line``, joined into one text."""
    block = []
    while line - 1 in alone:
        line -= 1
        block.append(comments[line])
    return " ".join(reversed(block))


def key_comments(source: str, function: str = "get_config", root: str = "config") -> dict[str, KeyComment]:
    """Every ``root.X = ...`` assignment of ``function`` in ``source``, by dotted key, with its comments."""
    comments, alone = _comments_by_line(source)
    found: dict[str, KeyComment] = {}
    note, note_key, previous_end = "", "", None
    for statement in _function(ast.parse(source), function).body:
        if previous_end is None or statement.lineno > previous_end + 1:   # not the next line: a new run
            note, note_key = _note_above(statement.lineno, comments, alone), ""
        previous_end = statement.end_lineno
        targets = statement.targets if isinstance(statement, ast.Assign) else []
        key = _dotted(targets[0], root) if len(targets) == 1 else None
        if key is None:
            continue
        own = " ".join(comments[line] for line in range(statement.lineno, statement.end_lineno + 1)
                       if line in comments and line not in alone)
        note_key = note_key or key
        found[key] = KeyComment(key, statement.lineno, own, note, note_key if note else "")
        if own:   # a key with its own comment ends the note's reach (the note's first key keeps both)
            note = ""
    return found


def undocumented(keys: list[str], comments: dict[str, KeyComment]) -> list[str]:
    """The keys of ``keys`` without a comment (or without an assignment in the source), as messages."""
    problems = []
    for key in keys:
        comment = comments.get(key)
        if comment is None:
            problems.append(f"{key}: no `config.{key} = ...` line in get_config()")
        elif not comment.documented:
            problems.append(f"{key} (line {comment.line}): no comment; add a trailing `# meaning` or a comment "
                            "line directly above its group of keys")
    return problems

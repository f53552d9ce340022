"""The ``python -m at_jax.X`` entry points and their flags, read from the modules themselves.

An entry point is a module of the package with an ``if __name__ == "__main__":`` block. Its flags are the absl
flags it defines when imported, and the options of the argparse parsers its zero-argument ``*_parser()``
functions build (at_jax.visualize). Entry points define flags on absl's global ``FLAGS`` and several define
the same names (``--workdir``), so they are imported one after another in a fresh process
(:func:`collect_in_subprocess`) that removes each module's flags before importing the next.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import pathlib
import subprocess
import sys
from typing import Any

MAIN_GUARD = 'if __name__ == "__main__":'


#: Entry points listed first (the ones a reader starts with); the others follow alphabetically.
FIRST = ("at_jax.train", "at_jax.experiment", "at_jax.visualize")


def entry_points(package_dir: pathlib.Path, package: str = "at_jax") -> list[str]:
    """Module names of the files under ``package_dir`` that run as ``python -m``: :data:`FIRST`, then by name."""
    names = []
    for path in sorted(package_dir.rglob("*.py")):
        if MAIN_GUARD in path.read_text(encoding="utf-8"):
            parts = path.relative_to(package_dir).with_suffix("").parts
            names.append(".".join((package, *parts)))
    return sorted(names, key=lambda name: (FIRST.index(name) if name in FIRST else len(FIRST), name))


def _absl_flag(flag: Any) -> dict:
    enum_values = getattr(flag.parser, "enum_values", None)
    return {"name": flag.name, "type": flag.flag_type(), "default": _jsonable(flag.default),
            "help": flag.help or "", "choices": list(enum_values) if enum_values else None,
            "boolean": bool(flag.boolean)}


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        return repr(value)


def _option(action: argparse.Action) -> dict:
    return {"name": ", ".join(action.option_strings) or action.dest, "default": _jsonable(action.default),
            "help": action.help or "", "required": bool(action.required),
            "choices": list(action.choices) if action.choices else None,
            "flag": action.nargs == 0, "repeatable": isinstance(action, argparse._AppendAction)}  # pylint: disable=protected-access


def _parsers(module: Any) -> list[dict]:
    """The argparse parsers of ``module``'s zero-argument ``*_parser()`` functions, in source order."""
    found = []
    for name, function in vars(module).items():
        if (name.endswith("_parser") and inspect.isfunction(function) and function.__module__ == module.__name__
                and not inspect.signature(function).parameters):
            parser = function()
            if isinstance(parser, argparse.ArgumentParser):
                options = [_option(action) for action in parser._actions  # pylint: disable=protected-access
                           if not isinstance(action, argparse._HelpAction)]  # pylint: disable=protected-access
                found.append({"prog": parser.prog, "description": parser.description or "", "options": options,
                              "line": inspect.getsourcelines(function)[1]})
    return [{key: value for key, value in parser.items() if key != "line"}
            for parser in sorted(found, key=lambda parser: parser["line"])]


def collect(modules: list[str]) -> dict[str, dict]:
    """Module name -> {"doc", "flags", "parsers"}; run in a fresh process (see the module docstring)."""
    from absl import flags  # pylint: disable=import-outside-toplevel
    found = {}
    for name in modules:
        module = importlib.import_module(name)
        defined = list(flags.FLAGS.flags_by_module_dict().get(name, []))   # a copy: deleting edits the dict
        found[name] = {"doc": module.__doc__ or "", "flags": [_absl_flag(flag) for flag in defined],
                       "parsers": _parsers(module)}
        for flag in defined:
            delattr(flags.FLAGS, flag.name)
    return found


def collect_in_subprocess(modules: list[str], cwd: pathlib.Path) -> dict[str, dict]:
    """:func:`collect` in a fresh Python process started in ``cwd`` (the repository root)."""
    result = subprocess.run([sys.executable, __file__, *modules], cwd=cwd, capture_output=True, text=True,
                            check=False)
    if result.returncode:
        raise RuntimeError(f"reading the entry points' flags failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout)


if __name__ == "__main__":
    sys.path.insert(0, ".")
    print(json.dumps(collect(sys.argv[1:])))

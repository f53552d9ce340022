"""What every at_jax command line shares: the one-line user error, flag parsing that uses it, logging levels.

- A :class:`~at_jax.errors.UserError` ends the command with one line ``at_jax: error: ...`` on stderr and
  exit code 2; any other exception keeps its traceback (and a non-zero exit).
- ``--verbosity`` works as absl documents it. Without it, at_jax's own messages at INFO (resumed from step
  N, a run stopped, which teacher was loaded) are shown, other libraries' only from WARNING up, less
  orbax's warnings that at_jax causes on purpose (:data:`EXPECTED_WARNINGS`).
"""
from __future__ import annotations

import contextlib
import difflib
import logging as python_logging
import os
import sys
from typing import Any, Iterator

from absl import flags
from absl import logging

from at_jax.errors import Preempted, UserError

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
#: The embedded default's config file: what ``--config`` means when a command that takes one is given none.
DEFAULT_CONFIG = os.path.join(PACKAGE_DIR, "default_config.py")
#: orbax warnings about what at_jax does deliberately: checkpoints between evaluations carry no metric (the
#: best checkpoint is ranked among those that do), and finished runs are opened read-only.
EXPECTED_WARNINGS = ("did not provide metrics", "read_only=True, setting save_interval_steps",
                     "Given directory is read only")


def fail(message: object, code: int = 2, kind: str = "error") -> None:
    """The one-line user error: ``at_jax: error: ...`` on stderr, then exit ``code``."""
    text = " ".join(str(message).split()) or "unknown error"
    sys.stderr.write(f"at_jax: {kind}: {text}\n")
    sys.stderr.flush()
    sys.exit(code)


class _OwnInfoOnly(python_logging.Filter):
    """Passes at_jax's own records, and warnings and worse from everyone else but :data:`EXPECTED_WARNINGS`."""

    def filter(self, record: python_logging.LogRecord) -> bool:
        if record.pathname.startswith(PACKAGE_DIR):
            return True
        if record.levelno == python_logging.WARNING and any(text in record.getMessage()
                                                            for text in EXPECTED_WARNINGS):
            return False
        return record.levelno >= python_logging.WARNING


def configure_logging() -> None:
    """Applies the default described in the module docstring unless ``--verbosity`` was given."""
    if "verbosity" in flags.FLAGS and flags.FLAGS["verbosity"].present:
        return
    logging.use_absl_handler()  # also for entry points that parse their flags without absl (visualize)
    logging.set_verbosity(logging.INFO)
    for handler in python_logging.getLogger().handlers:
        if not any(isinstance(existing, _OwnInfoOnly) for existing in handler.filters):
            handler.addFilter(_OwnInfoOnly())


@contextlib.contextmanager
def user_errors(interrupted: str = "interrupted; re-run the same command to resume from the last checkpoint"
                ) -> Iterator[None]:
    """Turns a :class:`UserError` into :func:`fail`; a preemption (SIGTERM, checkpoint saved) into one line
    and exit 143; Ctrl-C into one line and exit 130."""
    try:
        yield
    except UserError as error:
        fail(error)
    except Preempted as stop:
        from at_jax.training.preemption import PREEMPTED_EXIT_CODE  # pylint: disable=import-outside-toplevel
        fail(stop, code=PREEMPTED_EXIT_CODE, kind="preempted")
    except KeyboardInterrupt:
        fail(interrupted, code=130)


def check_arguments(argv: list[str], required: tuple[str, ...], flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Ends the command in one line on a stray positional argument or a missing required flag."""
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    for name in required:
        if not flag_values[name].value:
            fail(f"--{name} is required")


def parse_flags(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
    """absl flag parsing (``app.run(main, flags_parser=parse_flags)``): flag and config-file errors
    (missing file, unknown key, bad override value, an exception inside the config file) become one line
    and exit code 2."""
    try:
        remaining = flag_values(argv)
        if "config" in flag_values and hasattr(flag_values["config"].value, "to_dict"):
            flag_values["config"].value.to_dict()  # a config file that failed to load raises only when read
        return remaining
    except flags.Error as error:
        fail(unknown_override(argv, flag_values) or _essence(str(error)))
    except AttributeError as error:
        if error.args and isinstance(error.args[0], KeyError):  # an override of a key the config lacks
            fail(unknown_override(argv, flag_values) or "unknown config key (see the config file for the valid keys)")
        fail(f"the config file raised AttributeError: {error}")
    except UserError as error:  # e.g. register_term refused a name
        fail(error)
    except Exception as error:  # pylint: disable=broad-except  # config files raise anything
        fail(unknown_override(argv, flag_values) or _essence(f"{type(error).__name__}: {error}"))
    return []


def unknown_override(argv: list[str], flag_values: flags.FlagValues) -> str | None:
    """``unknown config key loss.at_betaa; did you mean loss.at_beta?`` for the first ``--config.KEY=value``
    of ``argv`` whose dotted key the config file (loaded without overrides) lacks; None when every key exists
    (or the file itself does not load: that error is the one to show)."""
    files = [arg.split("=", 1)[1] for arg in argv[1:] if arg.startswith("--config=")]
    if "config" not in flag_values or not files:
        return None
    try:
        config = flag_values["config"].parser.parse(files[-1])
        config.to_dict()
    except Exception:  # pylint: disable=broad-except  # the file's own error is reported by the caller
        return None
    for arg in argv[1:]:
        if arg.startswith("--config.") or arg.startswith("--noconfig."):
            key = arg.split("config.", 1)[1].split("=", 1)[0]
            message = _missing_key(config, key)
            if message:
                return message
    return None


def _missing_key(config: Any, dotted: str) -> str | None:
    """The plain-words message for ``dotted`` when ``config`` lacks it, else None."""
    node: Any = config
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        is_group = hasattr(node, "keys")  # a ConfigDict or a dict
        if is_group and part in node:
            node = node[part]
            continue
        parent = ".".join(parts[:depth])
        if not is_group:
            return f"unknown config key {dotted}: {parent} is a value, not a group of keys"
        known = sorted(node.keys())
        if not known:
            return f"unknown config key {dotted}: {parent} has no keys in this config (add them in a config file)"
        close = difflib.get_close_matches(part, known, n=1)
        if close:
            return f"unknown config key {dotted}; did you mean {'.'.join(parts[:depth] + close + parts[depth + 1:])}?"
        return f"unknown config key {dotted}; {parent or 'the config'} has: {', '.join(known)}"
    return None


def _essence(message: str) -> str:
    """The line of a (possibly multi-line, traceback-carrying) error message that says what is wrong."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return "unknown error"
    for line in lines:
        if "[Errno" in line:  # a config file that cannot be read
            return f"cannot load config file: {line}"
    if any(line.startswith("Traceback") for line in lines):  # an exception inside get_config()
        return f"{lines[0].split(':', 1)[0]}: {lines[-1]}"
    return " ".join(lines)


def with_default_config(argv: list[str]) -> list[str]:
    """``argv`` with ``--config=<embedded default>`` first when no ``--config`` is given, so that
    ``--config.key=value`` overrides also apply to the embedded default."""
    if any(arg == "--config" or arg.startswith("--config=") for arg in argv[1:]):
        return list(argv)
    return [argv[0], f"--config={DEFAULT_CONFIG}", *argv[1:]]

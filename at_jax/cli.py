"""What every at_jax command line shares: the one-line user error and absl flag parsing that uses it."""
from __future__ import annotations

import sys

from absl import flags


def fail(message: object, code: int = 2) -> None:
    """The one-line user error: ``at_jax: error: ...`` on stderr, then exit ``code``."""
    text = " ".join(str(message).split()) or "unknown error"
    sys.stderr.write(f"at_jax: error: {text}\n")
    sys.stderr.flush()
    sys.exit(code)


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing (``app.run(main, flags_parser=parse_flags)``): flag and config-file errors
    (missing file, unknown key, bad override value) become one line and exit code 2."""
    try:
        remaining = flags.FLAGS(argv)
        if "config" in flags.FLAGS and flags.FLAGS["config"].value is not None:
            flags.FLAGS["config"].value.to_dict()  # a config file that failed to load raises only when read
        return remaining
    except flags.Error as error:
        fail(_essence(str(error)))
    except (KeyError, AttributeError) as error:  # an override of a key the config does not have
        fail(f"unknown config key {str(error).strip(chr(34))} (see the config file for the valid keys)")
    except Exception as error:  # pylint: disable=broad-except  # config files raise anything
        fail(_essence(f"{type(error).__name__}: {error}"))
    return []


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

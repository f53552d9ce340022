"""The Python files users bring: config files, and the files they register models and datasets from (which
file registered something, and running it again in a later process: a teacher loaded by a student run, a
figure drawn from a finished run)."""
from __future__ import annotations

import importlib.util
import inspect
import os
import sys
import types

from at_jax.errors import ConfigError

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def caller_file(depth: int = 2) -> str:
    """The absolute path of the file ``depth`` frames above this function's own (2: the caller of the function
    that calls this; "" inside at_jax or not a file)."""
    frame = inspect.currentframe()
    for _ in range(depth):
        frame = frame.f_back if frame is not None else None
    path = os.path.abspath(frame.f_code.co_filename) if frame is not None else ""
    return "" if not os.path.isfile(path) or path.startswith(PACKAGE_DIR + os.sep) else path


def run_user_file(path: str, what: str = "model") -> None:
    """Runs the Python file ``path`` (a config file that registers a model or dataset) so that what it
    registers exists in this process; one line when the file is gone."""
    if not os.path.isfile(path):
        raise ConfigError(f"the file that registered the {what}, {path}, no longer exists")
    load_python_file(path)


def load_python_file(path: str) -> types.ModuleType:
    """Runs the Python file ``path`` as a module (named after its absolute path) and returns it."""
    name = f"at_jax_user_file_{abs(hash(os.path.abspath(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module

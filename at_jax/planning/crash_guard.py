"""A crash of XLA's TPU compiler turned into one line.

libtpu can die by a signal while it compiles (0.0.42.1 segfaults on every v6e train step in compile-only mode),
which no ``try`` in Python can catch. :func:`run_in_child` therefore runs ``compile_for`` again as a child
process and waits: the child writes what it is compiling to a stage file (:func:`mark`) and its stderr to a log;
at_jax's own log records (the batch search's line per compile) pass through as they come, the rest of its stderr
is replayed when it exits, and its exit code returned. When it dies by a signal, the command ends with
one line naming the compiler, the signal and the stage (``at_jax: error: XLA's TPU compiler (libtpu 0.0.42.1)
crashed (SIGSEGV) compiling the train call for v6e:2x4 ...``) and the log that holds libtpu's own report, and
exit code 1: a crash is not something the user did (exit 2 is kept for what they can fix).
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from typing import IO, Iterator

from at_jax.planning.topology import libtpu_version

#: Set in the child: the file it names its current stage in (also what tells it that it is the child).
STAGE_FILE = "AT_JAX_COMPILE_STAGE_FILE"
#: Signals by which a compiler crashes (rather than being stopped from outside).
CRASH_SIGNALS = (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE)
#: A log record of Python code in absl's format (``I1207 14:10:01.123456 4758 plan.py:64] ...``): passed on live;
#: libtpu's own records name a ``.cc`` file and wait with the rest of stderr.
LIVE_LINE = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ [\w.-]+\.py:\d+\] ")


def in_child() -> bool:
    return bool(os.environ.get(STAGE_FILE))


def mark(stage: str) -> None:
    """Names what the child is compiling now (``the train call for v5e:2x4, batch 128``); nothing outside a child."""
    path = os.environ.get(STAGE_FILE)
    if path:
        with open(path, "w", encoding="utf-8") as stage_file:
            stage_file.write(stage)


def crash_message(signal_number: int, stage: str, log_path: str) -> str:
    """The one line for a child killed by ``signal_number`` while compiling ``stage``."""
    name = signal.Signals(signal_number).name
    if signal_number in CRASH_SIGNALS:
        return (f"XLA's TPU compiler ({libtpu_version()}) crashed ({name}) compiling {stage or 'the run'}; not a "
                f"fault of the config: try another libtpu version (pip index versions libtpu); the compiler's "
                f"report: {log_path}")
    return f"the compilation was stopped by {name} while compiling {stage or 'the run'} (log: {log_path})"


def _read(path: str) -> str:
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as text:
        return text.read()


@contextlib.contextmanager
def _forwarded_stop_signals(child: subprocess.Popen) -> Iterator[None]:
    """While the child runs: SIGTERM and SIGINT sent to this process reach the child (which ends as a user's
    interrupt does) instead of ending this process first."""
    previous = {number: signal.signal(number, lambda received, _frame: child.send_signal(received))
                for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _copy_stderr(pipe: IO[str], log: IO[str], held_back: list[str]) -> None:
    """Every line of the child's stderr into ``log``; :data:`LIVE_LINE` s to this process's stderr now, the
    others into ``held_back``."""
    for line in pipe:
        log.write(line)
        log.flush()
        if LIVE_LINE.match(line):
            sys.stderr.write(line)
            sys.stderr.flush()
        else:
            held_back.append(line)


def run_in_child(command: list[str]) -> tuple[int, str]:
    """Runs ``command`` (``python -m at_jax.compile_for ...``) as a child that :func:`mark` s its stages; (its
    exit code, the one line if it died by a signal, else ""). Its stdout passes through; its log records as they
    come, the rest of its stderr when it ends (kept in a log on a crash)."""
    log = tempfile.NamedTemporaryFile("w+", prefix="at_jax_compile_for_", suffix=".log", delete=False)
    held_back: list[str] = []
    with log, tempfile.TemporaryDirectory(prefix="at_jax_compile_stage_") as stage_dir:
        stage_path = os.path.join(stage_dir, "stage")
        child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, errors="replace",
                                 env={**os.environ, STAGE_FILE: stage_path})
        copier = threading.Thread(target=_copy_stderr, args=(child.stderr, log, held_back), daemon=True)
        copier.start()
        with _forwarded_stop_signals(child):
            code = child.wait()
        copier.join()
        stage = _read(stage_path)
    if code < 0:
        return code, crash_message(-code, stage, log.name)
    sys.stderr.write("".join(held_back))
    os.unlink(log.name)
    return code, ""

"""The trainer as a function: ``at_jax.train(config, workdir)`` runs what ``python -m at_jax.train`` runs.

``config`` is a ConfigDict (``at_jax.get_config()`` gives the embedded default or a config file's, locked, so
that a misspelt key raises instead of being added); ``config.pipeline = "teacher_then_students"`` trains the
teacher and the students in ``workdir/teacher``, ``workdir/student``, ``workdir/student_<method>`` and returns
their summaries by name; ``pipeline = ""`` trains one run (or a multi-run job) in ``workdir`` and returns its
summary. Calling it again resumes (a finished run returns its saved summary). User mistakes raise
:class:`at_jax.errors.UserError` subclasses carrying the CLI's one-line message.
"""
from __future__ import annotations

import functools
import os

import ml_collections

from at_jax.errors import ConfigError
from at_jax.experiments.teacher_students import teacher_then_students
from at_jax import training
from at_jax.training import sharding
from at_jax.user_files import load_python_file

#: ``config.pipeline`` values: the teacher, then the students; or one run.
PIPELINES = ("teacher_then_students", "")
DEFAULT_CONFIG_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                   "default_config.py")


def get_config(path: str | None = None) -> ml_collections.ConfigDict:
    """The config of a config file (``"configs/X.py"`` or ``"configs/X.py:ARG"``, as ``--config=`` takes it;
    None: the embedded default), locked: values can change, keys cannot be added."""
    path, _, argument = (path or DEFAULT_CONFIG_FILE).partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path} does not exist")
    module = load_python_file(path)
    config = module.get_config(argument) if argument else module.get_config()
    config.lock()
    return config


@functools.cache
def start_distributed() -> None:
    """:func:`at_jax.training.sharding.initialize_distributed`, once per process (a notebook trains many times)."""
    sharding.initialize_distributed()


def run_pipeline(config: ml_collections.ConfigDict, workdir: str) -> dict[str, dict]:
    """Summaries by run name of what ``config.pipeline`` trains in ``workdir`` (what the CLI prints)."""
    if config.get("pipeline", "") not in PIPELINES:
        raise ConfigError(f"unknown pipeline {config.pipeline!r}; valid: 'teacher_then_students' or ''")
    start_distributed()
    if config.get("pipeline"):
        return teacher_then_students(config, workdir)
    return {os.path.basename(os.path.normpath(workdir)): training.train_and_evaluate(config, workdir)}


def train(config: ml_collections.ConfigDict | None, workdir: str) -> dict:
    """Trains ``config`` (None: the embedded default) in ``workdir``, resuming, and returns the summary: the
    run's (``pipeline = ""``), or ``{run name: summary}`` of the teacher and students (the default pipeline)."""
    if not workdir:
        raise ConfigError("train(config, workdir) needs a workdir")
    summaries = run_pipeline(get_config() if config is None else config, os.fspath(workdir))
    return summaries if config is None or config.get("pipeline") else next(iter(summaries.values()))

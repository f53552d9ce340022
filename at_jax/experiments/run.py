"""Running an experiment: every planned run not yet finished, then the results (see :mod:`.plan`).

``run_experiment(config, workdir)`` trains ``DIR/teacher`` and ``DIR/<method>/seed_<s>``; a run whose
``summary.json`` holds the full step count is not redone, a partial one resumes through the trainer. Results
go to ``DIR/results.json`` and ``DIR/results.md`` after every run (:mod:`at_jax.experiments.report`).
"""
from __future__ import annotations

import json

from typing import Callable, Mapping

import jax
import ml_collections
import numpy as np
from absl import logging

from at_jax.data import dataset_from_config
from at_jax.experiments import report
from at_jax.experiments.plan import (TEACHER, PlannedRun, check_consistent, job_can_run, job_config, method_order,
                                     plan, run_groups, seed_list)
from at_jax.run_files import SUMMARY_FILE, as_path, read_json
from at_jax.training import train_and_evaluate
from at_jax.training.checkpoint import finished_summary, load_run
from at_jax.training.setup import total_steps

TrainFn = Callable[[ml_collections.ConfigDict, str], dict]


class StepCounter:
    """Total train steps of a run config; loads a dataset (once per dataset config) only for epoch counts."""

    def __init__(self):
        self._num_train: dict[str, int] = {}

    def total_steps(self, run_config: ml_collections.ConfigDict) -> int:
        if run_config.num_train_steps > 0:
            return total_steps(run_config, 0)
        key = json.dumps(run_config.dataset.to_dict(), sort_keys=True, default=str)
        if key not in self._num_train:
            self._num_train[key] = len(dataset_from_config(run_config.dataset).train_labels)
        return total_steps(run_config, self._num_train[key])


def run_experiment(config: ml_collections.ConfigDict, workdir: str, *, train_fn: TrainFn | None = None,
                   on_run: Callable[[int, int, PlannedRun, bool], None] | None = None) -> dict:
    """Trains every planned run not yet finished, in order, and returns the results dict.

    ``train_fn(run_config, run_workdir) -> summary`` defaults to the trainer. ``on_run(index, count, run,
    done)`` is called before each run (``done``: finished earlier, will be skipped). ``DIR/results.json``
    and ``DIR/results.md`` are rewritten after every run.
    """
    train_fn = train_fn or train_and_evaluate
    is_chief = jax.process_index() == 0
    runs = plan(config, workdir)
    if config.teacher_workdir:
        runs = runs[1:]  # an existing teacher: not ours to train
    for run in runs:
        check_consistent(run)
    steps = StepCounter()
    summaries: dict[tuple[str, int], dict] = {}
    if config.teacher_workdir:
        summaries[(TEACHER, config.teacher_seed)] = read_json(
            as_path(config.teacher_workdir) / SUMMARY_FILE) or {}
    parameter_counts: dict[str, int | None] = {}
    as_path(workdir).mkdir(parents=True, exist_ok=True)
    results: dict = {}
    index = 0
    for group in run_groups(runs, bool(config.get("parallel_seeds", False))):
        pending = []
        for run in group:
            summary = finished_summary(run.workdir, steps.total_steps(run.config))
            if on_run is not None:
                on_run(index, len(runs), run, summary is not None)
            index += 1
            if summary is None:
                pending.append(run)
            else:
                summaries[(run.method, run.seed)] = summary
        if pending and len(group) > 1 and job_can_run(group):
            job_dir = str(as_path(group[0].workdir).parent)
            logging.info("experiment %s: training %s as one job in %s", config.name,
                         ", ".join(run.name for run in group), job_dir)
            job_summary = train_fn(job_config(group), job_dir)
            for run in group:
                summaries[(run.method, run.seed)] = job_summary["runs"][f"seed_{run.seed}"]
        else:
            for run in pending:
                logging.info("experiment %s: training %s in %s", config.name, run.name, run.workdir)
                summaries[(run.method, run.seed)] = train_fn(run.config, run.workdir)
        results = collect_results(config, workdir, summaries, parameter_counts)
        if is_chief:
            report.write_results(workdir, results)
    return results


def count_parameters(run_workdir: str) -> int | None:
    """The number of model parameters in the newest checkpoint of a run (None when unreadable)."""
    try:
        params = load_run(run_workdir).params
    except Exception:  # pylint: disable=broad-except  (a count is optional in the table)
        return None
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(params)))


def collect_results(config: ml_collections.ConfigDict, workdir: str, summaries: Mapping[tuple[str, int], dict],
                    parameter_counts: dict[str, int | None] | None = None) -> dict:
    """The results dict (:func:`at_jax.report.build_results`) of the runs in ``summaries``.

    ``summaries`` maps (method, seed) -> summary, with ("teacher", teacher_seed) for the teacher.
    ``parameter_counts`` (model name -> count) is a cache filled from the runs' checkpoints.
    """
    parameter_counts = {} if parameter_counts is None else parameter_counts
    runs = plan(config, workdir)
    student: dict[str, dict[int, dict]] = {}
    teacher_summary = None
    for run in runs:
        summary = summaries.get((run.method, run.seed))
        if summary is None:
            continue
        if run.method == TEACHER:
            teacher_summary = summary
        else:
            student.setdefault(run.method, {})[run.seed] = summary
        model = run.config.model
        if model not in parameter_counts or parameter_counts[model] is None:
            parameter_counts[model] = count_parameters(run.workdir)
    return report.build_results(
        name=config.name, description=config.description, base=config.base.to_dict(),
        teacher_model=runs[0].config.model, teacher_workdir=runs[0].workdir, teacher_summary=teacher_summary,
        methods=method_order(config), seeds=seed_list(config), student_summaries=student,
        parameter_counts=parameter_counts, labels=config.method_labels.to_dict(),
        paper_errors=config.paper_reference.errors.to_dict(),
        paper_setting=config.paper_reference.setting.to_dict())

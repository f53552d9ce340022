"""Experiments: one teacher, then the student with each method over several seeds (the paper's tables).

An experiment config (``make_experiment_config``) holds

- ``base``: a full run config (at_jax/default_config.py keys) for the *student*;
- ``methods``: method name -> loss overrides (e.g. ``{"at": {"at_beta": 1e3}}``); every transfer term of
  ``base.loss`` is switched off first, so ``"none": {}`` is the plain student;
- ``method_order``: the comma-separated methods to run, in table order (a subset of ``methods``);
- ``seeds`` (count) and ``first_seed``: the student runs use seeds ``first_seed .. first_seed + seeds - 1``;
- ``teacher_seed``, ``teacher_overrides`` (nested overrides of the teacher's run config) and
  ``teacher_workdir`` (a finished teacher run to reuse; "" = train one in ``DIR/teacher``);
- ``paper_reference``: ``errors`` (method or "teacher" -> the paper's error %) and ``setting`` (the base
  config values under which those numbers apply), shown beside ours only when the setting matches.

- ``parallel_seeds``: train the seeds of each method as one job of vmapped runs (``config.parallel_runs``
  of the trainer) in ``DIR/<method>``; the runs land in the same ``DIR/<method>/seed_<s>`` directories.

``run_experiment(config, workdir)`` trains ``DIR/teacher`` (from ``base`` with ``model = base.teacher.model``,
no transfer terms) and ``DIR/<method>/seed_<s>``; a run whose ``summary.json`` holds the full step count is
not redone, a partial one resumes through the trainer. Results go to ``DIR/results.json`` and
``DIR/results.md`` after every run (see :mod:`at_jax.experiment_results`).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Mapping

import jax
import ml_collections
import numpy as np
from absl import logging

from at_jax import experiment_results
from at_jax.checkpoint import load_teacher
from at_jax.data import load_dataset
from at_jax.pipeline import TRANSFER_KEYS
from at_jax.trainer import train_and_evaluate

TEACHER = "teacher"
# Run-config keys that may differ between an existing run and this experiment without making it another
# run: output and bookkeeping settings, and the step count (a longer run resumes from a shorter one).
IGNORED_KEYS = ("progress", "tensorboard", "run_name", "log_every_steps", "eval_every_steps",
                "checkpoint_every_steps", "keep_checkpoints", "steps_per_call", "eval_batch_size",
                "num_train_steps", "num_epochs", "pipeline", "teacher.workdir", "num_classes",
                "parallel_mode")
TEACHER_LOSS_KEYS = ("at_beta", "kd_alpha", "factt_beta", "grad_at_beta")

TrainFn = Callable[[ml_collections.ConfigDict, str], dict]


class ExperimentError(ValueError):
    """An experiment config or workdir that cannot be used."""


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One training run of an experiment: ``method`` is "teacher" for the teacher."""
    method: str
    seed: int
    workdir: str
    config: ml_collections.ConfigDict

    @property
    def name(self) -> str:
        return TEACHER if self.method == TEACHER else f"{self.method}/seed_{self.seed}"


def make_experiment_config(base: ml_collections.ConfigDict, *, name: str, methods: Mapping[str, Mapping],
                           seeds: int = 5, first_seed: int = 0, teacher_overrides: Mapping | None = None,
                           paper_reference: Mapping[str, float] | None = None,
                           paper_setting: Mapping | None = None, description: str = "",
                           method_labels: Mapping[str, str] | None = None) -> ml_collections.ConfigDict:
    """The experiment ConfigDict described in the module docstring; ``methods`` keeps its order."""
    config = ml_collections.ConfigDict()
    config.name = name
    config.description = description
    config.base = ml_collections.ConfigDict(base.to_dict())
    config.base.pipeline = ""
    config.methods = ml_collections.ConfigDict({method: dict(overrides) for method, overrides in methods.items()})
    config.method_order = ",".join(methods)
    config.method_labels = ml_collections.ConfigDict(dict(method_labels or {}))
    config.seeds = seeds
    config.first_seed = first_seed
    config.teacher_seed = 0
    config.teacher_workdir = ""
    config.parallel_seeds = False
    config.teacher_overrides = ml_collections.ConfigDict(dict(teacher_overrides or {}))
    config.paper_reference = ml_collections.ConfigDict()
    config.paper_reference.errors = ml_collections.ConfigDict(dict(paper_reference or {}))
    config.paper_reference.setting = ml_collections.ConfigDict(dict(paper_setting or {}))
    return config


def method_order(config: ml_collections.ConfigDict) -> list[str]:
    """The methods to run, in order; each must be a key of ``config.methods``."""
    order = config.method_order
    names = [name.strip() for name in (order.split(",") if isinstance(order, str) else order)]
    names = [name for name in names if name]
    if not names:
        raise ExperimentError("method_order lists no method")
    unknown = [name for name in names if name not in config.methods]
    if unknown:
        raise ExperimentError(f"unknown method {unknown[0]!r} in method_order; valid: {', '.join(config.methods)}")
    if TEACHER in names:
        raise ExperimentError(f"{TEACHER!r} is reserved for the teacher run; rename that method")
    if len(set(names)) != len(names):
        raise ExperimentError(f"method_order lists a method twice: {order}")
    return names


def seed_list(config: ml_collections.ConfigDict) -> list[int]:
    if not isinstance(config.seeds, int) or config.seeds < 1:
        raise ExperimentError(f"seeds is the number of seeds per method and must be >= 1, got {config.seeds!r}")
    return list(range(config.first_seed, config.first_seed + config.seeds))


def apply_overrides(node: ml_collections.ConfigDict, overrides: Mapping, where: str) -> None:
    """Sets ``overrides`` (nested mappings) on ``node``; unknown keys raise, except inside model_kwargs."""
    for key, value in overrides.items():
        open_node = where.endswith("model_kwargs")
        if key not in node and not open_node:
            raise ExperimentError(f"{where}: unknown key {key!r}; valid: {', '.join(node.keys())}")
        if isinstance(value, Mapping) and key in node and isinstance(node[key], ml_collections.ConfigDict):
            apply_overrides(node[key], value, f"{where}.{key}")
            continue
        try:
            node[key] = value
        except TypeError as error:
            raise ExperimentError(f"{where}.{key}: {error}") from None


def _copy(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(config.to_dict())


def teacher_run(config: ml_collections.ConfigDict, workdir: str) -> PlannedRun:
    """The teacher: ``base`` with ``model = base.teacher.model``, no transfer terms, no model_kwargs."""
    run = _copy(config.base)
    run.pipeline = ""
    run.model = config.base.teacher.model
    run.model_kwargs = {}
    run.seed = config.teacher_seed
    run.teacher.workdir = ""
    for key in TRANSFER_KEYS:
        if key in run.loss:
            run.loss[key] = 0.0
    apply_overrides(run, config.teacher_overrides, "teacher_overrides")
    if run.model != config.base.teacher.model:
        raise ExperimentError("set the teacher's model with base.teacher.model, not teacher_overrides.model")
    run.run_name = TEACHER
    directory = config.teacher_workdir or os.path.join(workdir, TEACHER)
    return PlannedRun(TEACHER, config.teacher_seed, directory, run)


def student_run(config: ml_collections.ConfigDict, workdir: str, method: str, seed: int,
                teacher_workdir: str) -> PlannedRun:
    """``base`` with seed ``seed``, all transfer terms off, then ``methods[method]`` on ``base.loss``."""
    run = _copy(config.base)
    run.pipeline = ""
    run.seed = seed
    for key in TRANSFER_KEYS:
        if key in run.loss:
            run.loss[key] = 0.0
    apply_overrides(run.loss, config.methods[method], f"methods.{method}")
    run.teacher.workdir = teacher_workdir
    run.run_name = f"{method}/seed_{seed}"
    return PlannedRun(method, seed, os.path.join(workdir, method, f"seed_{seed}"), run)


def plan(config: ml_collections.ConfigDict, workdir: str) -> list[PlannedRun]:
    """Teacher first, then every (method, seed) in table order."""
    teacher = teacher_run(config, workdir)
    runs = [teacher]
    for method in method_order(config):
        runs += [student_run(config, workdir, method, seed, teacher.workdir) for seed in seed_list(config)]
    return runs


def uses_teacher(run_config: ml_collections.ConfigDict) -> bool:
    return any(run_config.loss.get(key, 0.0) for key in TEACHER_LOSS_KEYS)


class StepCounter:
    """Total train steps of a run config; loads a dataset (once per dataset config) only for epoch counts."""

    def __init__(self):
        self._num_train: dict[str, int] = {}

    def total_steps(self, run_config: ml_collections.ConfigDict) -> int:
        if run_config.num_train_steps > 0:
            return int(run_config.num_train_steps)
        key = json.dumps(run_config.dataset.to_dict(), sort_keys=True, default=str)
        if key not in self._num_train:
            dataset_config = run_config.dataset
            options = {k: v for k, v in dataset_config.items() if k not in ("name", "data_dir", "seed")}
            data_dir = os.path.expanduser(dataset_config.data_dir) if dataset_config.data_dir else None
            dataset = load_dataset(dataset_config.name, data_dir, seed=dataset_config.get("seed", 0), **options)
            self._num_train[key] = len(dataset.train_labels)
        return int(run_config.num_epochs) * (self._num_train[key] // run_config.batch_size)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, Mapping):
        flat = {}
        for key, value in tree.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat if flat or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: tree}


def config_differences(saved: Mapping, intended: Mapping) -> list[str]:
    """``key: saved -> intended`` for every setting that differs, leaving out :data:`IGNORED_KEYS`."""
    as_json = lambda tree: _flatten(json.loads(json.dumps(tree, default=str)))
    saved_flat, intended_flat = as_json(saved), as_json(intended)
    ignored = lambda key: any(key == name or key.startswith(name + ".") for name in IGNORED_KEYS)
    return [f"{key}: {saved_flat.get(key, '<unset>')!r} -> {intended_flat.get(key, '<unset>')!r}"
            for key in sorted(set(saved_flat) | set(intended_flat))
            if not ignored(key) and saved_flat.get(key) != intended_flat.get(key)]


def read_json(path: str) -> dict | None:
    """The JSON object in ``path``, or None when the file is missing or unreadable."""
    try:
        with open(path) as file:
            return json.load(file)
    except (OSError, json.JSONDecodeError):
        return None


def check_consistent(run: PlannedRun) -> None:
    """Raises when ``run.workdir`` already holds a run with other settings (nothing is overwritten)."""
    saved = read_json(os.path.join(run.workdir, "config.json"))
    if saved is None:
        return
    differences = config_differences(saved, run.config.to_dict())
    if differences:
        raise ExperimentError(f"{run.workdir} holds a run with other settings ({'; '.join(differences[:3])}); "
                              "use another --workdir or remove that run")


def finished_summary(run: PlannedRun, total_steps: int) -> dict | None:
    """The run's summary when it finished all ``total_steps`` steps, else None."""
    summary = read_json(os.path.join(run.workdir, "summary.json"))
    if summary is not None and summary.get("step") == total_steps and summary.get("accuracy") is not None:
        return summary
    return None


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
            os.path.join(config.teacher_workdir, "summary.json")) or {}
    parameter_counts: dict[str, int | None] = {}
    os.makedirs(workdir, exist_ok=True)
    results: dict = {}
    index = 0
    for group in run_groups(runs, bool(config.get("parallel_seeds", False))):
        pending = []
        for run in group:
            summary = finished_summary(run, steps.total_steps(run.config))
            if on_run is not None:
                on_run(index, len(runs), run, summary is not None)
            index += 1
            if summary is None:
                pending.append(run)
            else:
                summaries[(run.method, run.seed)] = summary
        if pending and len(group) > 1 and job_can_run(group):
            job_dir = os.path.dirname(group[0].workdir)
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
            experiment_results.write_results(workdir, results)
    return results


def run_groups(runs: list[PlannedRun], parallel_seeds: bool) -> list[list[PlannedRun]]:
    """What trains together: each run alone, or (``parallel_seeds``) all seeds of a method as one job."""
    if not parallel_seeds:
        return [[run] for run in runs]
    groups: list[list[PlannedRun]] = []
    for run in runs:
        if groups and run.method != TEACHER and groups[-1][0].method == run.method:
            groups[-1].append(run)
        else:
            groups.append([run])
    return groups


def job_can_run(group: list[PlannedRun]) -> bool:
    """A method's seeds train as one job unless some of them were started as separate runs earlier."""
    job_dir = os.path.dirname(group[0].workdir)
    if os.path.isfile(os.path.join(job_dir, "config.json")):
        return True
    return not any(os.path.isfile(os.path.join(run.workdir, "config.json")) for run in group)


def job_config(group: list[PlannedRun]) -> ml_collections.ConfigDict:
    """The trainer config of one job running the seeds of ``group`` (consecutive, as ``seed_list``)."""
    config = _copy(group[0].config)
    config.seed = group[0].seed
    config.parallel_runs = len(group)
    config.parallel_sweep, config.parallel_values = "", ()
    config.run_name = group[0].method
    return config


def count_parameters(run_workdir: str) -> int | None:
    """The number of model parameters in the newest checkpoint of a run (None when unreadable)."""
    try:
        params = load_teacher(run_workdir).params
    except Exception:  # pylint: disable=broad-except  (a count is optional in the table)
        return None
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(params)))


def collect_results(config: ml_collections.ConfigDict, workdir: str, summaries: Mapping[tuple[str, int], dict],
                    parameter_counts: dict[str, int | None] | None = None) -> dict:
    """The results dict (:func:`at_jax.experiment_results.build_results`) of the runs in ``summaries``.

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
    return experiment_results.build_results(
        name=config.name, description=config.description, base=config.base.to_dict(),
        teacher_model=runs[0].config.model, teacher_workdir=runs[0].workdir, teacher_summary=teacher_summary,
        methods=method_order(config), seeds=seed_list(config), student_summaries=student,
        parameter_counts=parameter_counts, labels=config.method_labels.to_dict(),
        paper_errors=config.paper_reference.errors.to_dict(),
        paper_setting=config.paper_reference.setting.to_dict())

"""Experiment plans: one teacher, then the student with each method over several seeds (the paper's tables).

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
``DIR/results.md`` after every run (see :mod:`at_jax.experiments.report`).
"""
from __future__ import annotations

import json

import dataclasses
from typing import Any, Mapping

import ml_collections

from at_jax.data.views import SIZE_KEY
from at_jax.errors import ConfigError, ExperimentError
from at_jax.run_files import CONFIG_FILE, as_path, read_json
from at_jax.losses import weight_keys

TEACHER = "teacher"
# Run-config keys that may differ between an existing run and this experiment without making it another
# run: output and bookkeeping settings, and the step count (a longer run resumes from a shorter one).
# ("tensorboard": the switch that metrics.writers replaced, still in configs saved before it.)
IGNORED_KEYS = ("progress", "metrics", "tensorboard", "run_name", "log_every_steps", "eval_every_steps",
                "checkpoint_every_steps", "keep_checkpoints", "steps_per_call", "eval_batch_size",
                "num_train_steps", "num_epochs", "pipeline", "teacher.workdir", "num_classes",
                "num_train_examples", "parallel_mode", "compilation_cache_dir", "model_source", "dataset_source")


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


def without_transfer_terms(loss_config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Sets every registered term's weight in ``loss_config`` to 0 (in place; returned for chaining), adding
    the keys of terms the config does not name yet (user terms), so that a method can turn them on."""
    for key in weight_keys():
        loss_config[key] = 0.0
    return loss_config


def _copy(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(config.to_dict())


def as_teacher(run: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """``run`` (in place) made the teacher's: ``model = teacher.model`` with ``teacher.model_kwargs``; when
    ``teacher.num_epochs`` > 0, that many epochs (a teacher may train longer than its students;
    ``num_train_steps`` > 0 still wins); at ``teacher.image_size`` when set; the optimizer keys ``teacher.optimizer`` sets (a ViT teacher's AdamW
    beside a CNN student's SGD)."""
    run.model = run.teacher.model
    run.model_kwargs = dict(run.teacher.get("model_kwargs", None) or {})   # the teacher's own options
    if run.teacher.get("image_size", 0):   # the teacher trains at its own input size
        run.dataset[SIZE_KEY] = run.teacher.image_size
        run.teacher.image_size = 0
    if run.teacher.get("num_epochs", 0) > 0:
        run.num_epochs = run.teacher.num_epochs
    for key, value in dict(run.teacher.get("optimizer", None) or {}).items():
        if key not in run.optimizer:
            raise ConfigError(f"teacher.optimizer.{key} is not an optimizer key; valid: {', '.join(run.optimizer)}")
        run.optimizer[key] = value
    return run


def teacher_run(config: ml_collections.ConfigDict, workdir: str) -> PlannedRun:
    """The teacher: ``base`` made the teacher's (:func:`as_teacher`: its own model_kwargs), no transfer terms."""
    run = as_teacher(_copy(config.base))
    run.pipeline = ""
    run.seed = config.teacher_seed
    run.teacher.workdir = ""
    without_transfer_terms(run.loss)
    apply_overrides(run, config.teacher_overrides, "teacher_overrides")
    if run.model != config.base.teacher.model:
        raise ExperimentError("set the teacher's model with base.teacher.model, not teacher_overrides.model")
    run.run_name = TEACHER
    directory = config.teacher_workdir or str(as_path(workdir) / TEACHER)
    return PlannedRun(TEACHER, config.teacher_seed, directory, run)


def student_run(config: ml_collections.ConfigDict, workdir: str, method: str, seed: int,
                teacher_workdir: str) -> PlannedRun:
    """``base`` with seed ``seed``, all transfer terms off, then ``methods[method]`` on ``base.loss``."""
    run = _copy(config.base)
    run.pipeline = ""
    run.seed = seed
    without_transfer_terms(run.loss)
    apply_overrides(run.loss, config.methods[method], f"methods.{method}")
    run.teacher.workdir = teacher_workdir
    run.run_name = f"{method}/seed_{seed}"
    return PlannedRun(method, seed, str(as_path(workdir) / method / f"seed_{seed}"), run)


def plan(config: ml_collections.ConfigDict, workdir: str) -> list[PlannedRun]:
    """Teacher first, then every (method, seed) in table order."""
    teacher = teacher_run(config, workdir)
    runs = [teacher]
    for method in method_order(config):
        runs += [student_run(config, workdir, method, seed, teacher.workdir) for seed in seed_list(config)]
    return runs


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
    added_later = lambda key: key not in saved_flat and not intended_flat.get(key)  # a new key at its neutral default
    return [f"{key}: {saved_flat.get(key, '<unset>')!r} -> {intended_flat.get(key, '<unset>')!r}"
            for key in sorted(set(saved_flat) | set(intended_flat))
            if not ignored(key) and not added_later(key) and saved_flat.get(key) != intended_flat.get(key)]


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
    job_dir = as_path(group[0].workdir).parent
    if (job_dir / CONFIG_FILE).exists():
        return True
    return not any((as_path(run.workdir) / CONFIG_FILE).exists() for run in group)


def job_config(group: list[PlannedRun]) -> ml_collections.ConfigDict:
    """The trainer config of one job running the seeds of ``group`` (consecutive, as ``seed_list``)."""
    config = _copy(group[0].config)
    config.seed = group[0].seed
    config.parallel_runs = len(group)
    config.parallel_sweep, config.parallel_values = "", ()
    config.run_name = group[0].method
    return config


def check_consistent(run: PlannedRun) -> None:
    """Raises when ``run.workdir`` already holds a run with other settings (nothing is overwritten)."""
    saved = read_json(as_path(run.workdir) / CONFIG_FILE)
    if saved is None:
        return
    differences = config_differences(saved, run.config.to_dict())
    if differences:
        raise ExperimentError(f"{run.workdir} holds a run with other settings ({'; '.join(differences[:3])}); "
                              "use another --workdir or remove that run")

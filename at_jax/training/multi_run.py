"""Jobs of runs: every training is a job of one or more runs, sharing one compiled program.

An ordinary run is a job of one run, written to the workdir itself. ``config.parallel_runs = S >= 2`` trains
S students at once.

The runs differ either in their seed (``parallel_sweep = ""``: run i has seed ``config.seed + i``, so its
own initialisation, batch order and augmentation) or in one loss weight (``parallel_sweep = "at_beta"``
and ``parallel_values = (v_0, ..., v_{S-1})``: every run has ``config.seed``, run i has that weight v_i), or
both: with ``parallel_seeds = N > 1`` a sweep runs every value with the seeds ``seed .. seed + N - 1``
(``parallel_runs = S * N``; directories ``<key>_<value>_seed_<s>``), a grid of paired seeds.
Run i computes exactly what a single run with its seed / weight computes; only the program is shared.
Each run has its own directory under the job's workdir (``seed_<s>`` or ``<key>_<value>``) holding a
single-run ``config.json``, ``metrics.jsonl``, TensorBoard events, checkpoints and ``summary.json``, so it
can be resumed, inspected or used as a teacher like any other run.

The state of the job is the per-run states stacked on a leading run axis. A swept weight travels in the
state as ``state["loss_weights"][key]`` (a traced scalar per run), so one compiled program serves all
values; the objective is built with the weight on (the largest value) so that its terms exist.

``parallel_mode``: "vmap" batches the runs (``jax.vmap``: one program whose convolutions take all runs at
once, what fills an accelerator); "unroll" puts S copies of the single-run step in one program; "auto"
(default) is :data:`at_jax.training.cpu_defaults.MULTI_RUN_MODE` on one device and "unroll" on a mesh of
several: ``jax.vmap`` turns the runs' convolutions into grouped convolutions (the runs folded into the
channels), which XLA's SPMD partitioner does not split over the batch axis: it all-gathers their operands and
every device computes the whole global batch (measured, BENCHMARKS.md "compiled for TPU": 5 vmapped runs
cost 4.9x the FLOPs per image of 5 runs on 8 chips, 142x on 256; unrolled, the single run's). An explicit
"vmap" on several devices is kept, with a warning. A job of one run is always "unroll" (one copy: the plain
step).
"""
from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from at_jax.errors import ConfigError
from at_jax.losses import sweepable_keys
from at_jax.training.cpu_defaults import default_multi_run_mode
from at_jax.run_files import STOPPED_FILE, as_path, read_json, write_json

if TYPE_CHECKING:  # the vmapped step is used by the benchmarks, which run where ml_collections is absent
    import ml_collections
#: Config keys that describe the job, not one run (a run's own config.json has them switched off).
JOB_KEYS = {"parallel_runs": 0, "parallel_sweep": "", "parallel_values": (), "parallel_seeds": 1,
            "parallel_mode": "auto"}


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of a parallel job: its directory name, seed and loss-weight overrides."""
    name: str
    seed: int
    loss_weights: Mapping[str, float]


def format_value(value: float) -> str:
    """A short, exact, directory-safe form of a swept value: 1000.0 -> "1000", 0.5 -> "0.5", 1e38 -> "1e+38"."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def run_specs(config: ml_collections.ConfigDict) -> list[RunSpec]:
    """The runs of a multi-run job (``[]`` for an ordinary single run); :class:`ConfigError` for bad settings."""
    runs = config.get("parallel_runs", 0)
    sweep = config.get("parallel_sweep", "") or ""
    values = tuple(config.get("parallel_values", ()) or ())
    if isinstance(runs, bool) or not isinstance(runs, (int, np.integer)) or runs < 0:
        raise ConfigError(f"parallel_runs must be an integer >= 0, got {runs!r}")
    if config.get("parallel_mode", "auto") not in MODES:
        raise ConfigError(f"parallel_mode must be one of {', '.join(MODES)}, got {config.parallel_mode!r}")
    if config.get("parallel_seeds", 1) != 1 and not sweep:
        raise ConfigError("parallel_seeds repeats each value of a sweep (parallel_sweep); for seeds alone use "
                          "parallel_runs")
    if runs <= 1:
        if sweep or values:
            raise ConfigError("parallel_sweep / parallel_values need parallel_runs >= 2 (one run per value)")
        return []
    if not sweep:
        if values:
            raise ConfigError("parallel_values is set but parallel_sweep is empty; name the loss weight to "
                             f"sweep, one of: {', '.join(sweepable_keys())}")
        return [RunSpec(f"seed_{config.seed + index}", int(config.seed + index), {}) for index in range(runs)]
    key = sweep[len("loss."):] if sweep.startswith("loss.") else sweep
    if key not in sweepable_keys():
        raise ConfigError(f"parallel_sweep {sweep!r} is not a sweepable loss weight; valid: {', '.join(sweepable_keys())}")
    seeds = config.get("parallel_seeds", 1)
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 1:
        raise ConfigError(f"parallel_seeds must be an integer >= 1, got {seeds!r}")
    if len(values) * seeds != runs:
        raise ConfigError(f"parallel_values has {len(values)} values but parallel_runs is {runs}; give one value per "
                          "run" if seeds == 1 else f"parallel_values has {len(values)} values and parallel_seeds is "
                          f"{seeds}, but parallel_runs is {runs}; give {len(values) * seeds} (one run per value and seed)")
    numbers = []
    for value in values:
        if isinstance(value, (bool, str)) or not isinstance(value, (int, float, np.number)) \
                or not math.isfinite(value) or value < 0:
            raise ConfigError(f"parallel_values must be finite numbers >= 0, got {value!r}")
        numbers.append(float(value))
    if len(set(numbers)) != len(numbers):
        raise ConfigError(f"parallel_values has repeated values {values}; use parallel_sweep='' for seeds")
    if key == "kd_alpha" and max(numbers) > 1:
        raise ConfigError(f"kd_alpha values must be in [0, 1], got {values}")
    if key == "kd_temperature" and (not config.loss.get("kd_alpha", 0.0) or min(numbers) <= 0):
        raise ConfigError("sweeping kd_temperature needs loss.kd_alpha > 0 and temperatures > 0")
    if seeds == 1:
        return [RunSpec(f"{key}_{format_value(value)}", int(config.seed), {key: value}) for value in numbers]
    return [RunSpec(f"{key}_{format_value(value)}_seed_{config.seed + offset}", int(config.seed + offset),
                    {key: value}) for value in numbers for offset in range(seeds)]


def swept_key(specs: Sequence[RunSpec]) -> str | None:
    """The swept loss weight of a job, ``None`` for a seed job."""
    return next(iter(specs[0].loss_weights), None) if specs else None


def structure_loss_config(loss_config: ml_collections.ConfigDict,
                          specs: Sequence[RunSpec]) -> ml_collections.ConfigDict:
    """The loss config the job's objective is built from: a swept weight set to its largest value, so that
    the term is computed (each run then scales it by its own value from the state)."""
    import ml_collections  # pylint: disable=import-outside-toplevel

    key = swept_key(specs)
    structure = ml_collections.ConfigDict(loss_config.to_dict())
    if key is not None:
        structure[key] = max(spec.loss_weights[key] for spec in specs)
    return structure


def run_config(config: ml_collections.ConfigDict, spec: RunSpec) -> dict:
    """The single-run config of one run (what its ``config.json`` records)."""
    record = config.to_dict()
    record["seed"] = spec.seed
    record["loss"] = dict(record["loss"], **spec.loss_weights)
    record.update(JOB_KEYS)
    return record


def single_run(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """``config`` with the job keys switched off (in place; returned for chaining): one ordinary run."""
    for key in ("parallel_runs", "parallel_sweep", "parallel_values", "parallel_seeds"):
        if key in config:
            config[key] = JOB_KEYS[key]
    return config


def initial_loss_weights(specs: Sequence[RunSpec]) -> dict:
    """``state["loss_weights"]`` of the stacked job state: ``{key: float32[S]}``, ``{}`` for seed jobs."""
    key = swept_key(specs)
    if key is None:
        return {}
    return {key: np.asarray([spec.loss_weights[key] for spec in specs], np.float32)}


def stack(trees: Sequence[Any]) -> Any:
    """Per-run pytrees -> one pytree with a leading run axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def stacked_init(init: Callable, placement: jax.sharding.Sharding) -> Callable:
    """``init(seed, teacher_variables)`` of every seed of a job, stacked on a leading run axis: the single run's
    compiled init called once per seed, then one compiled stack. Bit-identical to ``jax.vmap(init)`` (the
    random bits of a key do not depend on batching), but compiled once whatever the number of runs and shared
    with single runs of the same model: XLA:CPU takes ~4 s to compile a WRN's initialisers (threefry), ~9 s
    vmapped over 4 runs. ``seeds`` may be abstract (``jax.eval_shape``)."""
    single = jax.jit(init, out_shardings=placement)
    stack_runs = jax.jit(stack, out_shardings=placement)

    def init_runs(seeds, teacher_variables):
        return stack_runs([single(seed, teacher_variables) for seed in seeds])

    return init_runs


def unstack(tree: Any, index: int) -> Any:
    """Run ``index``'s slice of a stacked pytree."""
    return jax.tree.map(lambda leaf: leaf[index], tree)


def vmap_train_step(step: Callable) -> Callable:
    """``step(state, teacher_variables, data, inputs)`` over stacked states and per-run inputs (indices [S, B]
    or streamed batches with a leading run axis); the teacher and the data are shared by all runs."""
    return jax.vmap(step, in_axes=(0, None, None, 0))


def unrolled_train_step(step: Callable, runs: int) -> Callable:
    """:func:`vmap_train_step` as ``runs`` copies of the single-run step in one program, each on its run's
    slice (no batching rule: each run's convolutions stay ordinary convolutions; ``runs`` times the
    compile time)."""

    def unrolled(state, teacher_variables, data, indices):
        outputs = [step(unstack(state, index), teacher_variables, data, unstack(indices, index))
                   for index in range(runs)]
        return stack([output[0] for output in outputs]), stack([output[1] for output in outputs])

    return unrolled


MODES = ("auto", "vmap", "unroll")


def resolve_mode(mode: str, runs: int = 2, platform: str | None = None, devices: int = 1) -> str:
    """"vmap" or "unroll" for a ``parallel_mode`` setting over ``devices`` ("auto": the default of ``platform``,
    else of the backend, on one device; "unroll" on several, see the module docstring); a job of one run is
    "unroll" (one copy of the plain step)."""
    if mode not in MODES:
        raise ConfigError(f"parallel_mode must be one of {', '.join(MODES)}, got {mode!r}")
    if runs == 1:
        return "unroll"
    if mode == "auto":
        return default_multi_run_mode(platform) if devices == 1 else "unroll"
    if mode == "vmap" and devices > 1:
        logging.warning("parallel_mode='vmap' on %d devices: XLA does not split the vmapped runs' convolutions "
                        "over the batch (each device computes the whole batch); 'auto' unrolls them", devices)
    return mode


def job_train_step(step: Callable, runs: int, mode: str) -> Callable:
    """The job's step over stacked states: ``mode`` "vmap" (one batched program; what fills an accelerator)
    or "unroll" (:func:`unrolled_train_step`), "auto" as :func:`resolve_mode`."""
    return vmap_train_step(step) if resolve_mode(mode, runs) == "vmap" else unrolled_train_step(step, runs)


def job_eval_step(eval_step: Callable, runs: int, mode: str) -> Callable:
    """``eval_step(params, batch_stats, batch)`` over stacked params and batch stats (the batch shared by the
    runs), vmapped or unrolled as :func:`job_train_step`."""
    mode = resolve_mode(mode, runs)

    def job(params, batch_stats, batch):
        run_eval = lambda run_params, run_stats: eval_step(run_params, run_stats, batch)
        if mode == "vmap":
            return jax.vmap(run_eval)(params, batch_stats)
        return stack([run_eval(unstack(params, index), unstack(batch_stats, index)) for index in range(runs)])

    return job


def mark_stopped(run_dir: str, step: int, reason: str) -> None:
    """Records that a run of a job stopped (its loss became non-finite) while the others went on."""
    write_json(as_path(run_dir) / STOPPED_FILE, {"step": int(step), "reason": reason})


def stopped_reason(run_dir: str) -> str | None:
    """Why a run of a job was stopped, ``None`` if it was not."""
    record = read_json(as_path(run_dir) / STOPPED_FILE)
    return None if record is None else record.get("reason", "stopped")


@dataclasses.dataclass(frozen=True)
class Job:
    """What one ``train_and_evaluate`` call trains: one run (in ``workdir`` itself) or several (each in
    ``workdir/<run name>``, with the job's own ``config.json`` and ``summary.json`` in ``workdir``)."""
    workdir: str
    specs: tuple[RunSpec, ...]
    run_dirs: tuple[str, ...]
    run_records: tuple[dict, ...]      # each run's single-run config (its config.json)
    job_record: dict | None            # the job's config.json (None for a single run)

    @property
    def size(self) -> int:
        return len(self.specs)

    @property
    def seeds(self) -> list[int]:
        return [spec.seed for spec in self.specs]

    @property
    def swept_key(self) -> str | None:
        return swept_key(self.specs)


def plan_job(config: ml_collections.ConfigDict, workdir: str) -> Job:
    """The job of ``config`` in ``workdir`` (checks the job settings; writes nothing)."""
    specs = run_specs(config)
    if not specs:
        return Job(workdir, (RunSpec("", int(config.seed), {}),), (workdir,), (config.to_dict(),), None)
    return Job(workdir, tuple(specs), tuple(str(as_path(workdir) / spec.name) for spec in specs),
               tuple(run_config(config, spec) for spec in specs), config.to_dict())

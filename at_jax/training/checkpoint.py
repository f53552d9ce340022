"""Checkpoints with orbax: save every N steps, keep the last few and the best, auto-resume, finished runs.

A checkpoint holds the whole train state pytree ``{"step", "params", "batch_stats", "opt_state", "rng"}``.
A run whose batches are streamed also saves its input pipeline's state at each checkpoint step, one JSON file
per process in ``WORKDIR/input_state/`` (written before the checkpoint, pruned with it).
orbax writes each step to a temporary directory and renames it when complete, so a run killed at any moment
(even during a save) leaves only whole checkpoints behind; re-running the same command restores the newest.
Workdirs may be local paths or URLs (:mod:`at_jax.run_files`).

This module is the one owner of the checkpoint policy: retention (:func:`steps_to_keep`: the last N and the
best), resuming a job of several runs in lockstep (:func:`resume_step`: checkpoints newer than the step every
run has are deleted), the layout of a saved state (:func:`model_state`, also what importers write), and
whether a run is finished (:func:`finished_summary`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from at_jax.errors import CheckpointError
from at_jax.run_files import (CONFIG_FILE, INPUT_STATE_DIR, SUMMARY_FILE, absolute, as_path, check_reachable, read_json,
                              write_json)

BEST_METRIC = "accuracy"
#: A job of several runs keeps two steps at least, so that a save interrupted between runs leaves a common step.
MIN_KEEP_IN_JOB = 2


def steps_to_keep(keep: int, job_size: int = 1) -> int:
    """How many of the newest checkpoints a run keeps (besides the best): ``keep``, at least one, and at least
    :data:`MIN_KEEP_IN_JOB` in a job of several runs."""
    return max(1, keep) if job_size == 1 else max(keep, MIN_KEEP_IN_JOB)


def model_state(params: Any, batch_stats: Any, step: int = 0) -> dict:
    """The saved layout of a model's variables (a train state without optimizer): what :func:`load_run` reads
    and what an importer writes for a model trained elsewhere."""
    return {"step": np.int32(step), "params": {"model": params}, "batch_stats": batch_stats}


def finished_summary(workdir: str, steps: int) -> dict | None:
    """``workdir``'s ``summary.json`` when it records all ``steps`` train steps (the run is finished), else
    None. A run of a job that stopped (non-finite loss) records no step and is not finished."""
    summary = read_json(as_path(workdir) / SUMMARY_FILE)
    return summary if summary is not None and summary.get("step") == steps else None


def resume_step(checkpointers: "list[Checkpointer]", active: list[int]) -> int | None:
    """The newest step that every active run of a job has saved (None: none). Newer checkpoints of active
    runs (a save interrupted between runs) are deleted, so that the job continues in lockstep."""
    steps = [set(checkpointers[index].all_steps()) for index in active]
    common = set.intersection(*steps) if steps else set()
    step = max(common) if common else None
    for index in active:
        for newer in [saved for saved in checkpointers[index].all_steps() if step is None or saved > step]:
            checkpointers[index].manager.delete(newer)
    return step


class Checkpointer:
    """orbax ``CheckpointManager`` over ``workdir/checkpoints``: the last steps (:func:`steps_to_keep`) plus the
    best one.

    ``best`` ranks checkpoints saved with ``metrics={"accuracy": ...}``. Saves are asynchronous: :meth:`save` returns once the state is copied to host memory and orbax writes it
    in the background (each step to a temporary directory, renamed when complete); the next save, :meth:`wait`
    and :meth:`close` wait for the one in flight.
    """

    def __init__(self, workdir: str, keep: int = 3, read_only: bool = False, job_size: int = 1):
        self.directory = checkpoint_directory(workdir)
        policy = checkpoint_managers.AnyPreservationPolicy([
            checkpoint_managers.LatestN(n=steps_to_keep(keep, job_size)),
            checkpoint_managers.BestN(get_metric_fn=lambda metrics: metrics[BEST_METRIC], n=1,
                                      keep_checkpoints_without_metrics=False),
        ])
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy, best_fn=lambda metrics: metrics[BEST_METRIC], best_mode="max",
            create=not read_only, read_only=read_only,
            save_interval_steps=0 if read_only else 1,
            enable_async_checkpointing=not read_only, cleanup_tmp_directories=not read_only)
        self.manager = ocp.CheckpointManager(self.directory, options=options)
        self.input_directory = absolute(workdir) / INPUT_STATE_DIR

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        return self.manager.best_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state: Any, metrics: dict | None = None, input_state: dict | None = None) -> None:
        """Saves ``state`` at ``step`` (asynchronously) and, when given, this process's ``input_state``."""
        if input_state is not None:
            self.input_directory.mkdir(parents=True, exist_ok=True)
            write_json(self._input_file(step), input_state)
        self.manager.save(step, args=ocp.args.StandardSave(state), metrics=metrics, force=True)
        if input_state is not None:
            self._prune_input_states(keep=set(self.all_steps()) | {step})

    def input_state(self, step: int) -> dict | None:
        """This process's input-pipeline state saved with ``step``, or None."""
        return read_json(self._input_file(step))

    def _input_file(self, step: int):
        return self.input_directory / f"step_{step}.process_{jax.process_index()}.json"

    def _prune_input_states(self, keep: set[int]) -> None:
        suffix = f".process_{jax.process_index()}.json"
        for path in self.input_directory.glob(f"step_*{suffix}"):
            if int(path.name[len("step_"):-len(suffix)]) not in keep:
                path.unlink(missing_ok=True)

    def wait(self) -> None:
        """Blocks until the save in flight (if any) is on disk."""
        self.manager.wait_until_finished()

    def restore(self, step: int, abstract_state: Any | None = None) -> Any:
        """Restores ``step``; with ``abstract_state`` (shapes, dtypes, shardings) straight onto devices."""
        if abstract_state is None:
            return self.manager.restore(step, args=ocp.args.StandardRestore())
        return self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

    def close(self) -> None:
        self.manager.close()


def checkpoint_directory(workdir: str):
    """``WORKDIR/checkpoints`` as an absolute ``epath.Path`` (local or a URL such as gs://)."""
    return absolute(workdir) / "checkpoints"


def abstract_like(state: Any) -> Any:
    """``jax.ShapeDtypeStruct`` tree (with shardings) of a concrete state, as restore targets."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def read_saved_config(workdir: str) -> dict:
    """The ``config.json`` a run wrote into its workdir."""
    path = as_path(workdir) / CONFIG_FILE
    if not path.exists():
        raise CheckpointError(f"{workdir} has no config.json: it is not the workdir of an at_jax run")
    config = read_json(path)
    if config is None:
        raise CheckpointError(f"cannot read {path}")
    return config


def runs_near(path) -> str:
    """``"; runs in DIR: a, b/c"`` naming the at_jax runs in ``path`` or, when it does not exist, in its
    nearest existing folder (two levels deep at most); "" when there are none."""
    folder = path
    while not folder.is_dir() and folder.parent != folder:
        folder = folder.parent
    if not folder.is_dir():
        return ""
    found = []
    for child in sorted(folder.iterdir()):
        if child.is_dir() and (child / CONFIG_FILE).exists():
            found.append(child.name)
        elif child.is_dir():
            found += [f"{child.name}/{inner.name}" for inner in sorted(child.iterdir())
                      if inner.is_dir() and (inner / CONFIG_FILE).exists()]
    if not found:
        return f"; {folder} holds no at_jax run"
    return f"; runs in {folder}: {', '.join(found[:12])}" + (" ..." if len(found) > 12 else "")


@dataclasses.dataclass(frozen=True)
class RunCheckpoint:
    """A finished run's config (as saved) and its model variables."""
    config: dict
    params: Any
    batch_stats: Any
    step: int


def load_run(workdir: str, role: str = "run") -> RunCheckpoint:
    """Loads the newest checkpoint of a finished run (a frozen teacher, a model to visualise, ...): its weights,
    or their moving average when the run kept one with ``ema.use_for_final``.

    ``role`` names the run in error messages ("teacher workdir ... does not exist").
    """
    if not workdir:
        raise CheckpointError(f"no {role} workdir given" + (": set --config.teacher.workdir to a finished "
                                                            "run's workdir" if role == "teacher" else ""))
    directory = check_reachable(workdir, role=f"{role} workdir")
    if not directory.is_dir():
        raise CheckpointError(f"{role} workdir {workdir} does not exist{runs_near(directory)}")
    if not (directory / CONFIG_FILE).exists():
        raise CheckpointError(f"{role} workdir {workdir} has no config.json: it is not the workdir of an at_jax "
                              f"run{runs_near(directory)}")
    config = read_saved_config(workdir)
    if (config.get("parallel_runs") or 0) >= 2:
        runs = sorted(str(run) for run in directory.iterdir() if (run / CONFIG_FILE).exists())
        raise CheckpointError(f"{role} workdir {workdir} is a job of {config['parallel_runs']} parallel runs; "
                              f"point at one of its runs: {', '.join(runs)}")
    missing = f"{role} workdir {workdir} has no checkpoints: train the {role if role != 'run' else 'model'} first"
    if not (directory / "checkpoints").is_dir():
        raise CheckpointError(missing)
    try:
        checkpointer = Checkpointer(workdir, read_only=True)
        step = checkpointer.latest_step()
        if step is None:
            raise CheckpointError(missing)
        state = checkpointer.restore(step)
        checkpointer.close()
    except CheckpointError:
        raise
    except Exception as error:  # orbax raises many types for damaged files
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{role} checkpoint in {workdir} is unreadable: {message}") from None
    if not isinstance(state, dict) or "params" not in state or "model" not in state["params"]:
        raise CheckpointError(f"{role} checkpoint in {workdir} is not an at_jax train state")
    if (config.get("ema") or {}).get("use_for_final") and "ema" in state:   # the run's final model: the average
        return RunCheckpoint(config=config, params=state["ema"]["params"],
                             batch_stats=state["ema"].get("batch_stats", {}), step=int(step))
    return RunCheckpoint(config=config, params=state["params"]["model"],
                         batch_stats=state.get("batch_stats", {}), step=int(step))


def model_from_config(config: Mapping, *, dtype: Any = None) -> Any:
    """The flax module a run's saved ``config.json`` describes (its model name, class count, keywords)."""
    from at_jax import models  # pylint: disable=import-outside-toplevel

    if "model" not in config or "num_classes" not in config:
        raise CheckpointError("the run's config.json names no model or class count")
    options = dict(config.get("model_kwargs") or {})
    if dtype is not None:
        options["dtype"] = dtype
    if config.get("model_source") and not models.registry.source_of(config["model"]):
        models.registry.load_source(config["model_source"])  # a user's model, registered by its file
    return models.create(config["model"], int(config["num_classes"]), **options)


def variables_of(run: RunCheckpoint) -> dict:
    """``{"params": ..., "batch_stats": ...}`` of a loaded run, ready for ``model.apply(variables, x, train=False)``."""
    return {"params": run.params, **({"batch_stats": run.batch_stats} if run.batch_stats else {})}


def load_model(workdir: str, role: str = "run") -> tuple[Any, dict]:
    """``(model, variables)`` of a finished run (or imported teacher) in ``workdir``:
    ``model.apply(variables, x_nhwc, train=False) -> (logits, features)``."""
    run = load_run(workdir, role=role)
    return model_from_config(run.config), variables_of(run)

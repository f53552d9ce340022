"""The trainer: ``train_and_evaluate(config, workdir)`` — state, frozen teacher, compiled step, epoch loop.

No CLI here (that is ``at_jax.train``). State is a plain pytree ``{"step", "params", "batch_stats",
"opt_state", "rng"}`` with ``params = {"model": ..., "adapters": ...}`` (adapters only for F-ActT); the
teacher is a separate frozen pytree loaded from a finished run's workdir and never checkpointed here.
"""
from __future__ import annotations

import functools
import json
import math
import os
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from at_jax import models, parallel, parallel_runs
from at_jax.checkpoint import Checkpointer, CheckpointError, abstract_like, load_teacher
from at_jax.data import load_dataset
from at_jax.losses import build_objective
from at_jax.metrics import MetricWriter, NonFiniteLossError, Progress, check_finite
from at_jax.optimizer import make_optimizer
from at_jax.steps import StepConfig, make_eval_step, make_multi_step, make_train_step
from at_jax.workdir import check_resume_compatible, check_writable, save_config, write_json

GRADIENT_KEYS = ("grad_at_beta", "grad_penalty_beta", "flip_symmetry_beta")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


class ConfigError(ValueError):
    """A config value a user set cannot work."""


def compute_dtype(name: str) -> Any:
    if name not in DTYPES:
        raise ConfigError(f"unknown compute dtype {name!r}; valid: {', '.join(DTYPES)}")
    return DTYPES[name]


@functools.lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    """The example order of one epoch: a function of (seed, epoch) only."""
    order = np.random.default_rng([seed, epoch]).permutation(num_examples).astype(np.int32)
    order.flags.writeable = False
    return order


def batch_indices(seed: int, step: int, num_examples: int, batch_size: int) -> np.ndarray:
    """Global example indices of train step ``step`` (drop-remainder epochs)."""
    steps_per_epoch = num_examples // batch_size
    epoch, offset = divmod(step, steps_per_epoch)
    return epoch_permutation(seed, epoch, num_examples)[offset * batch_size:(offset + 1) * batch_size]


def default_steps_per_call() -> int:
    """Train steps per compiled call: 1 on CPU (loops slow XLA:CPU convolutions), 10 on accelerators."""
    return 1 if jax.default_backend() == "cpu" else 10


def next_multiple(step: int, every: int) -> int:
    """The first multiple of ``every`` after ``step``."""
    return (step // every + 1) * every


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises :class:`ConfigError` for values that cannot work, before anything is written."""
    for key in ("log_every_steps", "checkpoint_every_steps"):
        if config[key] <= 0:
            raise ConfigError(f"{key} must be positive, got {config[key]}")
    if config.num_train_steps <= 0 and config.num_epochs <= 0:
        raise ConfigError("set num_epochs > 0 or num_train_steps > 0")
    learning_rate = config.optimizer.learning_rate
    if not isinstance(learning_rate, (int, float)) or not math.isfinite(learning_rate):
        raise ConfigError(f"optimizer.learning_rate must be a finite number, got {learning_rate}")


def augmentation(config: ml_collections.ConfigDict, dataset) -> tuple[int, bool]:
    """(crop padding, flip) from ``config.augment``, defaulting to the dataset's recommendation."""
    augment = config.get("augment", {})
    pad = augment.get("pad", -1)
    pad = dataset.pad if pad is None or pad < 0 else int(pad)
    flip_setting = augment.get("flip", "dataset")
    if flip_setting not in ("dataset", "on", "off"):
        raise ConfigError(f"augment.flip must be 'dataset', 'on' or 'off', got {flip_setting!r}")
    flip = dataset.flip if flip_setting == "dataset" else flip_setting == "on"
    height = dataset.train_images.shape[1]
    if pad >= height:
        raise ConfigError(f"augment.pad {pad} must be smaller than the image size {height}")
    return pad, flip


def load_teacher_for(config: ml_collections.ConfigDict, num_classes: int):
    """The frozen teacher named by ``config.teacher``, checked against the student's task."""
    teacher = load_teacher(config.teacher.workdir)
    saved_model = teacher.config.get("model")
    if config.teacher.model and config.teacher.model != saved_model:
        raise CheckpointError(f"teacher workdir {config.teacher.workdir} holds model {saved_model!r}, but "
                              f"teacher.model is {config.teacher.model!r}")
    if teacher.config.get("num_classes") != num_classes:
        raise CheckpointError(f"teacher has {teacher.config.get('num_classes')} classes, the student's "
                              f"dataset has {num_classes}")
    saved_dataset = teacher.config.get("dataset", {}).get("name")
    if saved_dataset != config.dataset.name:
        raise CheckpointError(f"teacher was trained on {saved_dataset!r}, the student on "
                              f"{config.dataset.name!r}")
    return teacher, saved_model


def device_data(dataset, eval_chunk: int, mesh) -> dict:
    """The whole dataset as replicated uint8 device arrays; the test set padded to whole chunks."""
    num_test = len(dataset.test_labels)
    padded = -(-num_test // eval_chunk) * eval_chunk
    pad = padded - num_test
    test_images = np.concatenate([dataset.test_images,
                                  np.zeros((pad,) + dataset.test_images.shape[1:], np.uint8)])
    return parallel.replicate({
        "train_images": dataset.train_images, "train_labels": dataset.train_labels.astype(np.int32),
        "test_images": test_images,
        "test_labels": np.concatenate([dataset.test_labels, np.zeros(pad, np.int32)]).astype(np.int32),
        "test_mask": np.concatenate([np.ones(num_test, np.float32), np.zeros(pad, np.float32)]),
    }, mesh)


def progress_message(run_means: dict[int, dict], images_per_second: float, num_runs: int) -> str:
    """Loss and accuracy of a run, or their medians over the running runs of a job."""
    if not run_means:
        return ""
    loss = float(np.median([means["total"] for means in run_means.values()]))
    accuracy = float(np.median([means["accuracy"] for means in run_means.values()]))
    if num_runs == 1:
        return f"loss {loss:.4f} acc {accuracy:.3f} {images_per_second:.0f} img/s"
    return (f"median loss {loss:.4f} acc {accuracy:.3f} ({len(run_means)}/{num_runs} runs) "
            f"{images_per_second * num_runs:.0f} img/s")


def parallel_summary(base: dict, timing: dict, specs: list, summaries: list[dict]) -> dict:
    """A job's summary: every run's, and median / min / max test accuracy over the runs that finished."""
    accuracies = [summary["accuracy"] for summary in summaries if summary.get("accuracy") is not None]
    statistics = ({"accuracy": float(np.median(accuracies)), "accuracy_min": float(min(accuracies)),
                   "accuracy_max": float(max(accuracies))} if accuracies else {"accuracy": None})
    return dict(base, parallel_runs=len(specs), parallel_sweep=parallel_runs.swept_key(specs) or "",
                finished_runs=len(accuracies), **statistics, **timing,
                runs={spec.name: summary for spec, summary in zip(specs, summaries)})


def restore_runs(checkpointers: list, state: Any, parallel_job: bool, stopped: dict[int, str]) -> Any:
    """The newest checkpoint of a run, or of a parallel job (stacked): the newest step every active run has.

    Checkpoints of active runs newer than that step (a save interrupted between runs) are deleted, so the
    job continues in lockstep; stopped runs get their own newest checkpoint back.
    """
    if not parallel_job:
        latest = checkpointers[0].latest_step()
        if latest is None:
            return state
        logging.info("resumed from step %d", latest)
        return checkpointers[0].restore(latest, abstract_like(state))
    active = [index for index in range(len(checkpointers)) if index not in stopped]
    common = set.intersection(*(set(checkpointers[index].all_steps()) for index in active)) if active else set()
    resume_step = max(common) if common else None
    runs = []
    for index, checkpointer in enumerate(checkpointers):
        if index in stopped:
            run_step = checkpointer.latest_step()
        else:
            for newer in [s for s in checkpointer.all_steps() if resume_step is None or s > resume_step]:
                checkpointer.manager.delete(newer)
            run_step = resume_step
        template = abstract_like(parallel_runs.unstack(state, index))
        runs.append(parallel_runs.unstack(state, index) if run_step is None
                    else checkpointer.restore(run_step, template))
    if resume_step is not None:
        logging.info("resumed %d runs from step %d", len(active), resume_step)
    return jax.device_put(parallel_runs.stack(runs), jax.tree.map(lambda leaf: leaf.sharding, state))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains ``config.model`` (with a frozen teacher when the objective uses one) and evaluates it.

    With ``config.parallel_runs = S >= 2`` it trains S independent students in one vmapped program (see
    :mod:`at_jax.parallel_runs`), each in its own directory under ``workdir``. Resumes from the checkpoints
    when present. Returns the final summary (also written to ``workdir/summary.json``); a parallel job's
    summary holds every run's under ``"runs"`` and the median accuracy.
    """
    check_config(config)
    try:
        specs = parallel_runs.run_specs(config)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    parallel_job = bool(specs)
    check_writable(workdir)
    check_resume_compatible(workdir, config.to_dict())
    run_dirs = [os.path.join(workdir, spec.name) for spec in specs] or [workdir]
    run_configs = [parallel_runs.run_config(config, spec) for spec in specs] or [config.to_dict()]
    for run_dir, run_record in zip(run_dirs, run_configs):
        check_resume_compatible(run_dir, run_record)
    mesh = parallel.make_mesh()
    try:
        parallel.check_batch_size(config.batch_size, mesh)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    dtype = compute_dtype(config.compute_dtype)
    teacher_dtype = compute_dtype(config.teacher.get("compute_dtype") or config.compute_dtype)

    dataset_options = {key: value for key, value in config.dataset.items()
                       if key not in ("name", "data_dir", "seed")}
    data_dir = os.path.expanduser(config.dataset.data_dir) if config.dataset.data_dir else None
    dataset = load_dataset(config.dataset.name, data_dir, seed=config.dataset.get("seed", 0),
                           **dataset_options)
    num_classes = dataset.num_classes
    num_train = len(dataset.train_labels)
    if config.batch_size > num_train:
        raise ConfigError(f"batch_size {config.batch_size} exceeds the {num_train} training examples")
    steps_per_epoch = num_train // config.batch_size
    total_steps = (config.num_train_steps if config.num_train_steps > 0
                   else config.num_epochs * steps_per_epoch)

    loss_config = parallel_runs.structure_loss_config(config.loss, specs)
    try:
        objective = build_objective(loss_config, ignore=GRADIENT_KEYS)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    gradient_weights = {key: float(loss_config.get(key, 0.0)) for key in GRADIENT_KEYS}
    for key, value in gradient_weights.items():
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"loss.{key} must be finite and >= 0, got {value}")
    model = models.create(config.model, num_classes, dtype=dtype, **config.get("model_kwargs", {}))
    teacher_model, teacher_variables, teacher_name = None, None, None
    if objective.uses_teacher or gradient_weights["grad_at_beta"]:
        teacher, teacher_name = load_teacher_for(config, num_classes)
        teacher_model = models.create(teacher_name, num_classes, dtype=teacher_dtype,
                                      **teacher.config.get("model_kwargs", {}))
        teacher_variables = parallel.replicate(
            {"params": teacher.params, **({"batch_stats": teacher.batch_stats} if teacher.batch_stats else {})},
            mesh)
    transform, schedule = make_optimizer(config.optimizer, total_steps)
    pad, flip = augmentation(config, dataset)

    is_chief = jax.process_index() == 0
    if is_chief:
        os.makedirs(workdir, exist_ok=True)
        save_config(workdir, config.to_dict(), num_classes)
        for run_dir, run_record in zip(run_dirs, run_configs):
            os.makedirs(run_dir, exist_ok=True)
            save_config(run_dir, run_record, num_classes)

    replicated = parallel.replicated(mesh)
    sample = jnp.zeros((1,) + dataset.train_images.shape[1:], dtype)

    def init_state(seed):
        model_key, adapter_key = jax.random.split(jax.random.PRNGKey(seed))
        variables = model.init(model_key, sample, train=False)
        params = {"model": variables["params"]}
        if objective.needs_adapters:
            student_features = model.apply(variables, sample, train=False)[1]
            teacher_features = teacher_model.apply(teacher_variables, sample, train=False)[1]
            params["adapters"] = objective.init_adapters(adapter_key, student_features, teacher_features)
        return {"step": jnp.zeros((), jnp.int32), "params": params,
                "batch_stats": variables.get("batch_stats", {}),
                "opt_state": transform.init(params),
                "rng": jax.random.PRNGKey(seed + 1)}

    if parallel_job:
        seeds = np.asarray([spec.seed for spec in specs], np.int32)
        state = jax.jit(jax.vmap(init_state), out_shardings=replicated)(seeds)
        loss_weights = parallel_runs.initial_loss_weights(specs)
        if loss_weights:
            state["loss_weights"] = parallel.replicate(loss_weights, mesh)
    else:
        state = jax.jit(init_state, static_argnums=0, out_shardings=replicated)(config.seed)
    keep = config.get("keep_checkpoints", 3)
    # A job keeps two steps at least, so that a save interrupted between its runs leaves a common step.
    checkpointers = [Checkpointer(run_dir, keep=max(keep, 2) if parallel_job else keep) for run_dir in run_dirs]
    stopped = {index: reason for index, run_dir in enumerate(run_dirs)
               if parallel_job and (reason := parallel_runs.stopped_reason(run_dir)) is not None}
    state = restore_runs(checkpointers, state, parallel_job, stopped)
    active = [index for index in range(len(run_dirs)) if index not in stopped]
    if not active:
        raise NonFiniteLossError(f"every run of the job in {workdir} has stopped (non-finite loss); see "
                                 "stopped.json in each run's directory")
    step = int(np.asarray(jax.device_get(state["step"])).reshape(-1)[active[0]])

    def stop_run(index: int, at_step: int, reason: str) -> None:
        """A run of a job became non-finite: it is left out from now on, the others go on."""
        stopped[index] = reason
        active.remove(index)
        if is_chief:
            parallel_runs.mark_stopped(run_dirs[index], at_step, reason)
        logging.warning("run %s stopped: %s", specs[index].name, reason)
        if not active:
            raise NonFiniteLossError(f"every run of the job stopped; the last: {reason}")

    eval_chunk = max(mesh.size, (config.get("eval_batch_size", 0) or config.batch_size) // mesh.size * mesh.size)
    data = device_data(dataset, eval_chunk, mesh)
    step_config = StepConfig(total_steps=total_steps, pad=pad, flip=flip, mean=dataset.mean,
                             std=dataset.std, compute_dtype=dtype, teacher_dtype=teacher_dtype,
                             **gradient_weights)
    single_step = make_train_step(model, teacher_model, objective, transform, schedule, step_config)
    eval_step = make_eval_step(model, step_config, num_classes, parallel.batch_sharded(mesh))
    if parallel_job:
        mode = config.get("parallel_mode", "auto")
        single_step = parallel_runs.job_train_step(single_step, len(specs), mode)
        eval_step = parallel_runs.job_eval_step(eval_step, len(specs), mode)
    train_steps = jax.jit(make_multi_step(single_step), donate_argnums=(0, 1))
    eval_step = jax.jit(eval_step, static_argnums=4)
    batch_shape = (len(specs), config.batch_size) if parallel_job else (config.batch_size,)
    metric_shapes = jax.eval_shape(single_step, state, teacher_variables, data,
                                   jax.ShapeDtypeStruct(batch_shape, jnp.int32))[1]
    zero_sums = lambda: jax.device_put(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), metric_shapes),
                                       replicated)
    run_value = ((lambda tree, index: jax.tree.map(lambda leaf: np.asarray(leaf)[index], tree)) if parallel_job
                 else (lambda tree, index: tree))

    def evaluate(current_state) -> list[dict]:
        """Test-set metrics of every run (one entry for a single run)."""
        totals = None
        for start in range(0, data["test_labels"].shape[0], eval_chunk):
            sums = eval_step(current_state["params"]["model"], current_state["batch_stats"], data,
                             np.int32(start), eval_chunk)
            totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
        totals = jax.device_get(totals)
        results = []
        for index in range(len(run_dirs)):
            run_totals = run_value(totals, index)
            result = {"eval/accuracy": float(run_totals["correct"] / run_totals["count"]),
                      "eval/loss": float(run_totals["loss"] / run_totals["count"])}
            if "correct_top5" in run_totals:
                result["eval/top5_accuracy"] = float(run_totals["correct_top5"] / run_totals["count"])
            results.append(result)
        return results

    summary_path = os.path.join(workdir, "summary.json")
    if step >= total_steps and os.path.isfile(summary_path):
        with open(summary_path) as file:
            return json.load(file)

    writers = [MetricWriter(run_dir, resume_step=step, enabled=is_chief and index in active,
                            tensorboard=config.get("tensorboard", True))
               for index, run_dir in enumerate(run_dirs)]
    label = config.get("run_name", "") or os.path.basename(os.path.normpath(workdir))
    progress = Progress(total_steps, step, label=label, enabled=is_chief and config.get("progress", True))
    process_slice = parallel.process_batch_slice(config.batch_size)
    steps_per_call = int(config.get("steps_per_call", 0)) or default_steps_per_call()
    run_seeds = [spec.seed for spec in specs] or [config.seed]
    metric_sums, steps_since_flush, flush_time = zero_sums(), 0, time.time()
    last_eval: list[dict] = [{} for _ in run_dirs]
    start_time, start_step = time.time(), step
    try:
        while step < total_steps:
            events = [total_steps, next_multiple(step, config.log_every_steps),
                      next_multiple(step, config.checkpoint_every_steps)]
            if config.eval_every_steps > 0:
                events.append(next_multiple(step, config.eval_every_steps))
            chunk = min(steps_per_call, min(events) - step)
            indices = np.stack([np.stack([batch_indices(seed, step + offset, num_train, config.batch_size)
                                          for seed in run_seeds]) for offset in range(chunk)])
            indices = indices[..., process_slice] if parallel_job else indices[:, 0, process_slice]
            state, metric_sums = train_steps(state, metric_sums, teacher_variables, data,
                                             parallel.host_local_to_global(indices, mesh,
                                                                           batch_axis=indices.ndim - 1))
            step += chunk
            steps_since_flush += chunk
            final = step == total_steps
            do_checkpoint = step % config.checkpoint_every_steps == 0 or final
            do_eval = final or (config.eval_every_steps > 0 and step % config.eval_every_steps == 0)
            if step % config.log_every_steps == 0 or do_checkpoint or do_eval:
                sums = jax.device_get(metric_sums)
                elapsed = time.time() - flush_time
                images_per_second = steps_since_flush * config.batch_size / max(elapsed, 1e-9)
                run_means = {}
                for index in list(active):
                    means = {name: float(value) / steps_since_flush
                             for name, value in run_value(sums, index).items()}
                    try:
                        check_finite(step, means)
                    except NonFiniteLossError as error:
                        if not parallel_job:
                            raise
                        stop_run(index, step, str(error))
                        continue
                    run_means[index] = means
                    writers[index].write(step, {f"train/{name}": value for name, value in means.items()},
                                         images_per_second=images_per_second, epoch=step / steps_per_epoch)
                progress.update(step, progress_message(run_means, images_per_second, len(run_dirs)))
                metric_sums, steps_since_flush, flush_time = zero_sums(), 0, time.time()
            if do_eval:
                results = evaluate(state)
                for index in active:
                    last_eval[index] = results[index]
                    writers[index].write(step, results[index])
                logging.info("step %d: %s", step, [results[index] for index in active])
            if do_checkpoint:
                for index in active:
                    run_state = parallel_runs.unstack(state, index) if parallel_job else state
                    checkpointers[index].save(step, run_state, metrics={
                        "accuracy": last_eval[index]["eval/accuracy"]} if do_eval else None)
    finally:
        progress.close()
        for writer in writers:
            writer.close()
        for checkpointer in checkpointers:
            checkpointer.close()

    if not all(last_eval[index] for index in active):  # finished earlier, stopped before the summary
        results = evaluate(state)
        last_eval = [result if index in active else last_eval[index] for index, result in enumerate(results)]
    base = {"model": config.model, "teacher": teacher_name, "dataset": config.dataset.name, "step": step}
    timing = {"train_seconds": time.time() - start_time, "steps_this_run": step - start_step}
    summaries = []
    for index, run_dir in enumerate(run_dirs):
        run_summary = dict(base, accuracy=last_eval[index].get("eval/accuracy"),
                           top5_accuracy=last_eval[index].get("eval/top5_accuracy"),
                           eval_loss=last_eval[index].get("eval/loss"), **timing)
        if parallel_job:
            run_summary.update(seed=specs[index].seed, **specs[index].loss_weights)
            if index in stopped:
                run_summary.update(step=None, stopped=stopped[index], accuracy=None, top5_accuracy=None,
                                   eval_loss=None)
            if is_chief:
                write_json(os.path.join(run_dir, "summary.json"), run_summary)
        summaries.append(run_summary)
    summary = summaries[0] if not parallel_job else parallel_summary(base, timing, specs, summaries)
    if is_chief:
        write_json(summary_path, summary)
    return summary

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

from at_jax import models, parallel
from at_jax.checkpoint import Checkpointer, CheckpointError, abstract_like, load_teacher
from at_jax.data import load_dataset
from at_jax.losses import build_objective
from at_jax.metrics import MetricWriter, Progress, check_finite
from at_jax.optimizer import make_optimizer
from at_jax.steps import StepConfig, make_eval_step, make_multi_step, make_train_step
from at_jax.workdir import check_resume_compatible, check_writable, save_config

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


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains ``config.model`` (with a frozen teacher when the objective uses one) and evaluates it.

    Resumes from ``workdir/checkpoints`` when present. Returns the final summary (also written to
    ``workdir/summary.json``).
    """
    check_config(config)
    check_writable(workdir)
    check_resume_compatible(workdir, config.to_dict())
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

    try:
        objective = build_objective(config.loss, ignore=GRADIENT_KEYS)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    gradient_weights = {key: float(config.loss.get(key, 0.0)) for key in GRADIENT_KEYS}
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

    os.makedirs(workdir, exist_ok=True)
    is_chief = jax.process_index() == 0
    if is_chief:
        save_config(workdir, config.to_dict(), num_classes)

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

    state = jax.jit(init_state, static_argnums=0, out_shardings=replicated)(config.seed)
    checkpointer = Checkpointer(workdir, keep=config.get("keep_checkpoints", 3))
    latest = checkpointer.latest_step()
    if latest is not None:
        state = checkpointer.restore(latest, abstract_like(state))
        logging.info("resumed %s from step %d", workdir, latest)
    step = int(state["step"])

    eval_chunk = max(mesh.size, (config.get("eval_batch_size", 0) or config.batch_size) // mesh.size * mesh.size)
    data = device_data(dataset, eval_chunk, mesh)
    step_config = StepConfig(total_steps=total_steps, pad=pad, flip=flip, mean=dataset.mean,
                             std=dataset.std, compute_dtype=dtype, teacher_dtype=teacher_dtype,
                             **gradient_weights)
    single_step = make_train_step(model, teacher_model, objective, transform, schedule, step_config)
    train_steps = jax.jit(make_multi_step(single_step), donate_argnums=(0, 1))
    eval_step = jax.jit(make_eval_step(model, step_config, num_classes, parallel.batch_sharded(mesh)),
                        static_argnums=4)
    metric_shapes = jax.eval_shape(single_step, state, teacher_variables, data,
                                   jnp.zeros((config.batch_size,), jnp.int32))[1]
    zero_sums = lambda: jax.device_put(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), metric_shapes),
                                       replicated)

    def evaluate(current_state) -> dict:
        totals = None
        for start in range(0, data["test_labels"].shape[0], eval_chunk):
            sums = eval_step(current_state["params"]["model"], current_state["batch_stats"], data,
                             np.int32(start), eval_chunk)
            totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
        totals = jax.device_get(totals)
        result = {"eval/accuracy": float(totals["correct"] / totals["count"]),
                  "eval/loss": float(totals["loss"] / totals["count"])}
        if "correct_top5" in totals:
            result["eval/top5_accuracy"] = float(totals["correct_top5"] / totals["count"])
        return result

    summary_path = os.path.join(workdir, "summary.json")
    if step >= total_steps and os.path.isfile(summary_path):
        with open(summary_path) as file:
            return json.load(file)

    writer = MetricWriter(workdir, resume_step=step, enabled=is_chief,
                          tensorboard=config.get("tensorboard", True))
    progress = Progress(total_steps, step, label=config.get("run_name", "") or os.path.basename(
        os.path.normpath(workdir)), enabled=is_chief and config.get("progress", True))
    process_slice = parallel.process_batch_slice(config.batch_size)
    steps_per_call = int(config.get("steps_per_call", 0)) or default_steps_per_call()
    metric_sums, steps_since_flush, flush_time = zero_sums(), 0, time.time()
    last_eval: dict = {}
    start_time, start_step = time.time(), step
    try:
        while step < total_steps:
            events = [total_steps, next_multiple(step, config.log_every_steps),
                      next_multiple(step, config.checkpoint_every_steps)]
            if config.eval_every_steps > 0:
                events.append(next_multiple(step, config.eval_every_steps))
            chunk = min(steps_per_call, min(events) - step)
            indices = np.stack([batch_indices(config.seed, step + offset, num_train, config.batch_size)
                                for offset in range(chunk)])[:, process_slice]
            state, metric_sums = train_steps(state, metric_sums, teacher_variables, data,
                                             parallel.host_local_to_global(indices, mesh, batch_axis=1))
            step += chunk
            steps_since_flush += chunk
            final = step == total_steps
            do_checkpoint = step % config.checkpoint_every_steps == 0 or final
            do_eval = final or (config.eval_every_steps > 0 and step % config.eval_every_steps == 0)
            if step % config.log_every_steps == 0 or do_checkpoint or do_eval:
                means = {name: float(value) / steps_since_flush
                         for name, value in jax.device_get(metric_sums).items()}
                check_finite(step, means)
                elapsed = time.time() - flush_time
                images_per_second = steps_since_flush * config.batch_size / max(elapsed, 1e-9)
                writer.write(step, {f"train/{name}": value for name, value in means.items()},
                             images_per_second=images_per_second, epoch=step / steps_per_epoch)
                progress.update(step, f"loss {means['total']:.4f} acc {means['accuracy']:.3f} "
                                      f"{images_per_second:.0f} img/s")
                metric_sums, steps_since_flush, flush_time = zero_sums(), 0, time.time()
            if do_eval:
                last_eval = evaluate(state)
                writer.write(step, last_eval)
                logging.info("step %d: %s", step, last_eval)
            if do_checkpoint:
                checkpointer.save(step, state, metrics={"accuracy": last_eval["eval/accuracy"]}
                                  if do_eval else None)
    finally:
        progress.close()
        writer.close()
        checkpointer.close()

    if not last_eval:  # finished earlier, but stopped before its summary was written
        last_eval = evaluate(state)
    summary = {"model": config.model, "teacher": teacher_name, "dataset": config.dataset.name,
               "step": step, "accuracy": last_eval.get("eval/accuracy"),
               "top5_accuracy": last_eval.get("eval/top5_accuracy"), "eval_loss": last_eval.get("eval/loss"),
               "train_seconds": time.time() - start_time, "steps_this_run": step - start_step}
    if is_chief:
        with open(summary_path + ".tmp", "w") as file:
            json.dump(summary, file, indent=2)
        os.replace(summary_path + ".tmp", summary_path)
    return summary

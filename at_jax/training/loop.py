"""``train_and_evaluate(config, workdir)``: a job of one or more runs, in four stages.

1. **plan** (:func:`at_jax.training.multi_run.plan_job`, :func:`check_workdirs`): the runs, their
   directories and configs; nothing is written. A finished job returns its summary here, before any data,
   model or teacher is loaded, and its files are left as they are.
2. **set up** (:func:`at_jax.training.setup.set_up`): data, models, teacher, objective, compiled steps;
   then the configs are written.
3. **resume or start** (:func:`resume_or_start`): the newest checkpoint every active run has, or the
   initial state.
4. **loop and finish** (:class:`Training`): train, log, evaluate, checkpoint; the final evaluation and the
   summaries.

An ordinary run is a job of one run in ``workdir`` itself; ``config.parallel_runs = S`` trains S runs in
``workdir/<run name>`` (:mod:`at_jax.training.multi_run`). No CLI here (that is ``at_jax.train``).
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from at_jax.data import dataset_from_config
from at_jax.errors import NonFiniteLossError, Preempted
from at_jax.training import multi_run, sharding
from at_jax.training.attention_probe import AttentionProbe, snapshot_interval
from at_jax.training.checkpoint import Checkpointer, abstract_like, finished_summary, resume_step
from at_jax.training.finetune import start_from
from at_jax.training.metrics import MetricWriter, Progress, check_finite
from at_jax.training.preemption import PreemptionWatch
from at_jax.training.run_figures import log_attention_figure
from at_jax.training.setup import Setup, set_up, total_steps
from at_jax.run_files import CONFIG_FILE, SUMMARY_FILE, as_path, read_json, write_json
from at_jax.training.workdir import check_resume_compatible, check_writable, save_config


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains the job of ``config`` in ``workdir`` (resuming from its checkpoints) and returns its summary
    (also in ``workdir/summary.json``); a multi-run job's summary holds each run's under ``"runs"``."""
    job = multi_run.plan_job(config, workdir)
    check_workdirs(job)
    snapshot_interval(config)   # metrics.attention_every checked before anything is written
    finished = finished_job_summary(config, job)
    if finished is not None:
        logging.info("%s finished earlier (step %d): nothing to do", workdir, finished["step"])
        return finished
    setup = set_up(config, job)
    write_configs(job, setup)
    training = resume_or_start(setup, job)
    try:
        try:
            training.run()
        finally:
            training.close()
        return training.finish()
    finally:
        training.close_writers()  # after finish(), which gives them the summaries


def check_workdirs(job: multi_run.Job) -> None:
    """Refuses a workdir that is not a writable directory or holds another run (reads only)."""
    check_writable(job.workdir)
    if job.job_record is not None:
        check_resume_compatible(job.workdir, job.job_record)
    for run_dir, record in zip(job.run_dirs, job.run_records):
        check_resume_compatible(run_dir, record)


def finished_job_summary(config: ml_collections.ConfigDict, job: multi_run.Job) -> dict | None:
    """The saved summary when the job already ran all its steps, else None."""
    saved = read_json(as_path(job.workdir) / CONFIG_FILE)
    if saved is None or not (as_path(job.workdir) / SUMMARY_FILE).exists():
        return None
    num_train = saved.get("num_train_examples")
    if num_train is None:  # written before the count was saved
        num_train = len(dataset_from_config(config.dataset).train_labels)
    return finished_summary(job.workdir, total_steps(config, int(num_train)))


def write_configs(job: multi_run.Job, setup: Setup) -> None:
    """``config.json`` of the job and of each run (with the class and example counts)."""
    if jax.process_index() != 0:
        return
    records = [(job.workdir, job.job_record)] if job.job_record is not None else []
    for directory, record in records + list(zip(job.run_dirs, job.run_records)):
        as_path(directory).mkdir(parents=True, exist_ok=True)
        save_config(directory, record, setup.inputs.num_classes, setup.inputs.num_train)


def restore_runs(checkpointers: list[Checkpointer], state, stopped: dict[int, str]):
    """The stacked state at the newest step every active run has (or ``state`` when there is none).

    Checkpoints of active runs newer than that step (a save interrupted between runs) are deleted, so the
    job continues in lockstep; stopped runs get their own newest checkpoint back.
    """
    active = [index for index in range(len(checkpointers)) if index not in stopped]
    common_step = resume_step(checkpointers, active)
    runs = []
    for index, checkpointer in enumerate(checkpointers):
        run_step = checkpointer.latest_step() if index in stopped else common_step
        run_state = multi_run.unstack(state, index)
        runs.append(run_state if run_step is None else checkpointer.restore(run_step, abstract_like(run_state)))
    if common_step is not None:
        logging.info("resumed %d run(s) from step %d", len(active), common_step)
    return jax.device_put(multi_run.stack(runs), jax.tree.map(lambda leaf: leaf.sharding, state))


def resume_or_start(setup: Setup, job: multi_run.Job) -> "Training":
    """The job's state: initial, or restored from the runs' checkpoints; runs stopped earlier stay stopped."""
    checkpointers = [Checkpointer(run_dir, keep=setup.config.get("keep_checkpoints", 3), job_size=job.size)
                     for run_dir in job.run_dirs]
    stopped = {index: reason for index, run_dir in enumerate(job.run_dirs)
               if (reason := multi_run.stopped_reason(run_dir)) is not None}
    if len(stopped) == job.size:
        raise NonFiniteLossError(f"every run of the job in {job.workdir} has stopped (non-finite loss); see "
                                 "stopped.json in each run's directory")
    state = setup.init_state(np.asarray(job.seeds, np.int32), setup.teacher_variables)
    loss_weights = multi_run.initial_loss_weights(job.specs)
    if loss_weights:
        state["loss_weights"] = sharding.replicate(loss_weights, setup.mesh)
    if setup.pretrained is not None:
        state = start_from(state, setup.pretrained)
    state = restore_runs(checkpointers, state, stopped)
    return Training(setup, job, state, checkpointers, stopped)


def next_multiple(step: int, every: int) -> int:
    """The first multiple of ``every`` after ``step``."""
    return (step // every + 1) * every


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


def run_slice(tree, index: int):
    """Run ``index``'s values of host arrays with a leading run axis."""
    return jax.tree.map(lambda leaf: np.asarray(leaf)[index], tree)


class Training:
    """The loop of a job: its state, the runs still active, their writers and checkpointers."""

    def __init__(self, setup: Setup, job: multi_run.Job, state, checkpointers: list[Checkpointer],
                 stopped: dict[int, str]):
        self.setup, self.job, self.state, self.checkpointers, self.stopped = setup, job, state, checkpointers, stopped
        self.config = setup.config
        self.active = [index for index in range(job.size) if index not in stopped]
        self.step = int(np.asarray(jax.device_get(state["step"])).reshape(-1)[self.active[0]])
        self.start_step, self.start_time = self.step, time.time()
        setup.inputs.start(list(job.seeds), self.step, [checkpointer.input_state(self.step)
                                                        for checkpointer in checkpointers])
        self.is_chief = jax.process_index() == 0
        metrics = self.config.metrics
        self.writers = [MetricWriter(run_dir, resume_step=self.step, writers=metrics.writers, config=record,
                                     wandb_project=metrics.wandb_project,
                                     enabled=self.is_chief and index in self.active)
                        for index, (run_dir, record) in enumerate(zip(job.run_dirs, job.run_records))]
        label = self.config.get("run_name", "") or as_path(job.workdir).name
        self.progress = Progress(setup.total_steps, self.step, label=label,
                                 enabled=self.is_chief and self.config.get("progress", True))
        self.last_eval: list[dict] = [{} for _ in job.run_dirs]
        self.preemption, self.calls, self.stop_at = PreemptionWatch(), 0, None
        shapes = jax.eval_shape(setup.single_step, state, setup.teacher_variables, setup.data,
                                setup.inputs.train_spec(job.size))[1]
        self._zero_sums = lambda: jax.device_put(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes),
                                                 sharding.replicated(setup.mesh))
        self._reset_sums()
        self.attention = AttentionProbe.create(setup, job)   # None unless metrics.attention_every > 0

    def _reset_sums(self) -> None:
        self.metric_sums, self.steps_since_flush, self.flush_time = self._zero_sums(), 0, time.time()

    def run(self) -> None:
        """Trains until the last step; logs, evaluates and saves at their intervals. On a preemption request
        it trains on to the next log step, saves there and raises :class:`Preempted`."""
        config, total = self.config, self.setup.total_steps
        if self.step == 0:
            self.record_attention()
        while self.step < total:
            events = [total, next_multiple(self.step, config.log_every_steps),
                      next_multiple(self.step, config.checkpoint_every_steps)]
            if config.eval_every_steps > 0:
                events.append(next_multiple(self.step, config.eval_every_steps))
            self.advance(min([self.setup.steps_per_call, *(event - self.step for event in events)]))
            if self.stop_at is None and self.preemption.requested(self.calls):
                self.stop_at = min(total, self.step if self.step % config.log_every_steps == 0
                                   else next_multiple(self.step, config.log_every_steps))
            final, stopping = self.step == total, self.step == self.stop_at
            do_checkpoint = self.step % config.checkpoint_every_steps == 0 or final or stopping
            do_eval = final or (config.eval_every_steps > 0 and self.step % config.eval_every_steps == 0)
            if self.step % config.log_every_steps == 0 or do_checkpoint or do_eval:
                self.log()
            if do_eval:
                self.record_eval()
            if do_checkpoint:
                self.save(with_metric=do_eval)
            if stopping and not final:
                for checkpointer in self.checkpointers:
                    checkpointer.wait()
                raise Preempted(f"checkpoint saved at step {self.step} of {total}; re-run the same "
                                "command to resume")

    def advance(self, count: int) -> None:
        """``count`` train steps in one compiled call."""
        setup = self.setup
        inputs = setup.inputs.train_inputs(list(self.job.seeds), self.step, count)
        self.state, self.metric_sums = setup.train_steps(self.state, self.metric_sums, setup.teacher_variables,
                                                         setup.data, inputs)
        self.step += count
        self.steps_since_flush += count
        self.calls += 1

    def log(self) -> None:
        """Writes the mean train metrics since the last log of every active run; stops a non-finite run."""
        sums = jax.device_get(self.metric_sums)
        images_per_second = self.steps_since_flush * self.config.batch_size / max(time.time() - self.flush_time, 1e-9)
        run_means = {}
        for index in list(self.active):
            means = {name: float(value) / self.steps_since_flush for name, value in run_slice(sums, index).items()}
            try:
                check_finite(self.step, means)
            except NonFiniteLossError as error:
                self.stop_run(index, str(error))
                continue
            run_means[index] = means
            self.writers[index].write(self.step, {f"train/{name}": value for name, value in means.items()},
                                      images_per_second=images_per_second,
                                      epoch=self.step / self.setup.steps_per_epoch)
        self.progress.update(self.step, progress_message(run_means, images_per_second, self.job.size))
        self._reset_sums()
        self.record_attention()

    def record_attention(self) -> None:
        """The active runs' attention maps at a snapshot step (``metrics.attention_every``; else nothing)."""
        if self.attention is not None and self.attention.due(self.step):
            self.attention.record(self.step, self.state, self.active, self.job.run_dirs, self.writers,
                                  write=self.is_chief)

    def stop_run(self, index: int, reason: str) -> None:
        """A run became non-finite. It is marked stopped while others go on; the last one raises (and stays
        unmarked, so that re-running, e.g. with a lower learning rate, resumes it from its last good step)."""
        self.active.remove(index)
        if not self.active:
            raise NonFiniteLossError(reason if self.job.size == 1 else f"every run of the job stopped; the last: "
                                     f"{reason}")
        self.stopped[index] = reason
        if self.is_chief:
            multi_run.mark_stopped(self.job.run_dirs[index], self.step, reason)
        logging.warning("run %s stopped: %s", self.job.specs[index].name, reason)

    def eval_weights(self) -> dict[str, tuple]:
        """Metric prefix -> (params, batch_stats) of what is evaluated: the raw weights ("eval/") and, when kept,
        the moving average ("eval/ema_")."""
        weights = {"eval/": (self.state["params"]["model"], self.state["batch_stats"])}
        if "ema" in self.state:
            weights["eval/ema_"] = (self.state["ema"]["params"], self.state["ema"]["batch_stats"])
        return weights

    def evaluate(self) -> list[dict]:
        """Test-set metrics of every run of the job (of the raw and of the averaged weights)."""
        setup, weights = self.setup, self.eval_weights()
        totals = dict.fromkeys(weights)
        for batch in setup.inputs.eval_batches():
            for prefix, (params, batch_stats) in weights.items():
                sums = setup.eval_step(params, batch_stats, batch)
                totals[prefix] = sums if totals[prefix] is None else jax.tree.map(jnp.add, totals[prefix], sums)
        totals = jax.device_get(totals)
        results = [{} for _ in range(self.job.size)]
        for prefix, prefix_totals in totals.items():
            for index in range(self.job.size):
                run_totals = run_slice(prefix_totals, index)
                results[index].update({f"{prefix}accuracy": float(run_totals["correct"] / run_totals["count"]),
                                       f"{prefix}loss": float(run_totals["loss"] / run_totals["count"])})
                if "correct_top5" in run_totals:
                    results[index][f"{prefix}top5_accuracy"] = float(run_totals["correct_top5"] / run_totals["count"])
        return results

    @property
    def final_prefix(self) -> str:
        """The metric prefix of the run's final model: the moving average with ``ema.use_for_final``."""
        return "eval/ema_" if self.config.get("ema", {}).get("use_for_final", False) else "eval/"

    def record_eval(self) -> None:
        results = self.evaluate()
        for index in self.active:
            self.last_eval[index] = results[index]
            self.writers[index].write(self.step, results[index])
        logging.info("step %d: test accuracy %s", self.step,
                     ", ".join(f"{100 * results[index]['eval/accuracy']:.2f}%" for index in self.active))

    def save(self, with_metric: bool) -> None:
        for index in self.active:
            metrics = {"accuracy": self.last_eval[index][f"{self.final_prefix}accuracy"]} if with_metric else None
            self.checkpointers[index].save(self.step, multi_run.unstack(self.state, index), metrics=metrics,
                                           input_state=self.setup.inputs.iterator_state(index))

    def close(self) -> None:
        self.setup.inputs.close()
        self.preemption.close()
        self.progress.close()
        for checkpointer in self.checkpointers:
            checkpointer.close()

    def close_writers(self) -> None:
        """Closes the runs' metric writers (after :meth:`finish` gave them the summaries)."""
        for writer in self.writers:
            writer.close()

    def finish(self) -> dict:
        """Final evaluation (when the run ended before one) and the summaries, written by the chief."""
        if not all(self.last_eval[index] for index in self.active):  # finished earlier, stopped before the summary
            results = self.evaluate()
            self.last_eval = [results[i] if i in self.active else self.last_eval[i] for i in range(self.job.size)]
        teacher = self.setup.teacher
        base = {"model": self.config.model, "teacher": teacher.name if teacher else None,
                "dataset": self.config.dataset.name, "step": self.step}
        timing = {"train_seconds": time.time() - self.start_time, "steps_this_run": self.step - self.start_step}
        summaries = [self.run_summary(index, base, timing) for index in range(self.job.size)]
        summary = summaries[0] if self.job.job_record is None else job_summary(base, timing, self.job, summaries)
        if self.is_chief:
            for run_dir, run_summary in zip(self.job.run_dirs, summaries):
                write_json(as_path(run_dir) / SUMMARY_FILE, run_summary)
            write_json(as_path(self.job.workdir) / SUMMARY_FILE, summary)
        for writer, run_summary in zip(self.writers, summaries):
            writer.write_summary(run_summary, self.step)
        self.log_figures()
        return summary

    def log_figures(self) -> None:
        """The attention figure of each finished run with a teacher, to the writers that take images
        (``metrics.attention_figure``; runs whose data is in memory: a streamed set is not loaded for it)."""
        if (not self.config.get("metrics", {}).get("attention_figure", False) or self.setup.teacher is None
                or self.setup.inputs.kind != "device"):
            return
        for index in self.active:
            if self.writers[index].takes_images:
                log_attention_figure(self.job.run_dirs[index], self.writers[index], self.step)

    def run_summary(self, index: int, base: dict, timing: dict) -> dict:
        spec, result, final = self.job.specs[index], self.last_eval[index], self.final_prefix
        summary = dict(base, accuracy=result.get(f"{final}accuracy"), top5_accuracy=result.get(f"{final}top5_accuracy"),
                       eval_loss=result.get(f"{final}loss"), **timing, seed=spec.seed, **spec.loss_weights)
        if "eval/ema_accuracy" in result:
            summary.update(raw_accuracy=result["eval/accuracy"], ema_accuracy=result["eval/ema_accuracy"])
        if index in self.stopped:
            summary.update(step=None, stopped=self.stopped[index], accuracy=None, top5_accuracy=None, eval_loss=None)
        return summary


def job_summary(base: dict, timing: dict, job: multi_run.Job, summaries: list[dict]) -> dict:
    """A multi-run job's summary: every run's, and median / min / max test accuracy over those that finished."""
    accuracies = [summary["accuracy"] for summary in summaries if summary.get("accuracy") is not None]
    statistics = ({"accuracy": float(np.median(accuracies)), "accuracy_min": float(min(accuracies)),
                   "accuracy_max": float(max(accuracies))} if accuracies else {"accuracy": None})
    return dict(base, parallel_runs=job.size, parallel_sweep=job.swept_key or "", finished_runs=len(accuracies),
                **statistics, **timing, runs={spec.name: summary for spec, summary in zip(job.specs, summaries)})

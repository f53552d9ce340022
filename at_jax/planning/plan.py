"""A run's config compiled for a topology: the :class:`~at_jax.planning.report.Report`, and the largest per-chip
batch that fits (:mod:`at_jax.planning.max_batch`)."""
from __future__ import annotations

import time
from typing import Mapping

import ml_collections
from absl import logging

from at_jax.data.shapes import dataset_shape
from at_jax.losses.terms import active_terms
from at_jax.planning.abstract_job import abstract_setup, step_arguments
from at_jax.planning.compiled import CompilerFailure, OutOfMemory, compile_job
from at_jax.planning.max_batch import find_max_batch
from at_jax.planning.report import Report, RunShape
from at_jax.planning.topology import Topology
from at_jax.training.setup import image_views


def describe_run(config: ml_collections.ConfigDict, uses_teacher: bool) -> str:
    """``student <- teacher (at_beta=1000, kd_alpha=0.9)``, or the student alone."""
    terms = ", ".join(f"{term.weight_key}={config.loss[term.weight_key]:g}" for term in active_terms(config.loss))
    pair = f"{config.model} <- {config.teacher.model}" if uses_teacher else config.model
    return f"{pair} ({terms})" if terms else pair


def compile_run(config: ml_collections.ConfigDict, topology: Topology,
                counts: Mapping[str, int] | None = None) -> Report:
    """The run of ``config`` built as the trainer would on ``topology`` and its steps compiled; raises
    :class:`~at_jax.planning.compiled.OutOfMemory` when XLA refuses a program too large for a device."""
    setup, job = abstract_setup(config, topology.devices, counts)
    where = f" for {topology.label} (global batch {int(config.batch_size)})"
    train, evaluation = compile_job(setup, step_arguments(setup, job), where)
    shape = RunShape(describe_run(config, setup.teacher is not None), int(config.batch_size), job.size,
                     setup.steps_per_call, len(topology.devices))
    return Report(topology, shape, train, evaluation)


def with_batch(config: ml_collections.ConfigDict, batch_size: int) -> ml_collections.ConfigDict:
    """A copy of ``config`` with another global batch."""
    changed = ml_collections.ConfigDict(config.to_dict())
    changed.batch_size = batch_size
    return changed


def search_max_batch(config: ml_collections.ConfigDict, topology: Topology, report: Report | None,
                     counts: Mapping[str, int] | None = None, granularity: int = 8) -> dict:
    """The largest per-device batch (a multiple of ``granularity``) whose train and eval steps compile within a
    device's memory: ``{"per_chip", "global", "probes": {batch: bytes needed}, "compiler_failures": {batch:
    line}, "compile_seconds": {batch: s}, "untried": Search.untried}`` (a refused batch is refused in seconds,
    a fitting one compiles in minutes); ``report`` is the config's own (reused as a probe; None when it did not
    fit). A batch the compiler fails on for a reason of its own (:class:`CompilerFailure`) counts as one that
    does not compile."""
    devices = len(topology.devices)
    failures: dict = {}
    seconds: dict = {}

    def needed(per_device: int) -> int | None:
        if report is not None and per_device * devices == report.run.global_batch:
            return report.needed
        start, allowed = time.perf_counter(), ""
        try:
            need = shown = compile_run(with_batch(config, per_device * devices), topology, counts).needed
        except OutOfMemory as refusal:       # the compiler's own limit may be below the chip's nominal HBM
            need, shown = max(refusal.needed, topology.memory_per_device + 1), refusal.needed or None
            allowed = f": the compiler allows {refusal.capacity / 2 ** 30:.2f}" if refusal.capacity else ""
        except CompilerFailure as failure:
            failures[per_device] = str(failure)
            logging.warning("batch %d per device: %s", per_device, failure)
            return None
        seconds[per_device] = round(time.perf_counter() - start, 1)
        logging.info("batch %d per device: %s GiB of %.2f (%s%s; compiled in %.0f s)", per_device,
                     "?" if shown is None else f"{shown / 2 ** 30:.2f}", topology.memory_per_device / 2 ** 30,
                     "fits" if need <= topology.memory_per_device else "too large", allowed, seconds[per_device])
        return need

    upper = dataset_shape(config.dataset, image_views(config), counts).num_train // devices
    search = find_max_batch(needed, topology.memory_per_device, start=int(config.batch_size) // devices,
                            granularity=granularity, upper=upper)
    best = search.largest_fitting
    probes = {batch: need for batch, need in sorted(search.needed.items()) if batch not in failures}
    return {"per_chip": best, "global": best * devices, "probes": probes, "compiler_failures": failures,
            "compile_seconds": seconds, "untried": search.untried}

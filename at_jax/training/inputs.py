"""What a job's steps read: the whole dataset on the devices (small sets) or batches streamed by grain (large).

Both give the loop the same four things: the train inputs of ``count`` steps for every run of the job
(leading axes ``[count, runs, batch]``), the eval batches (``{"images", "labels", "mask"}`` global arrays), the
facts the model needs (classes, image shape, mean/std, train size), and, for the streamed path, the iterator
state saved with each checkpoint. Which one a dataset uses is decided in
:func:`at_jax.data.from_config.input_data`.

Streamed batches are assembled from each process's part with ``jax.make_array_from_process_local_data``; the
transfer is dispatched asynchronously, so while the devices run one call the host prepares the next (and
grain's workers decode ahead), and the step does not wait as long as the host keeps up.
"""
from __future__ import annotations

import logging as std_logging
from typing import Any, Iterator

import jax
import numpy as np
from absl import logging

from at_jax.data import Dataset
from at_jax.data.streaming import ProcessPart, close_pipeline, eval_pipeline, train_pipeline
from at_jax.training import sharding
from at_jax.training.batches import device_data, job_batch_indices


def this_process_part(global_batch: int) -> ProcessPart:
    """The slots of a global batch that this process loads (contiguous, in process order)."""
    return ProcessPart.of(global_batch, jax.process_index(), jax.process_count())


class DeviceInputs:
    """The dataset whole on every device; a step's inputs are its example indices."""

    kind = "device"

    def __init__(self, dataset: Dataset, batch_size: int, eval_chunk: int, mesh):
        self.dataset, self.batch_size, self.eval_chunk, self.mesh = dataset, batch_size, eval_chunk, mesh
        self.num_train, self.num_classes = dataset.num_train, dataset.num_classes
        self.image_shape, self.mean, self.std = dataset.image_shape, dataset.mean, dataset.std
        self.data = device_data(dataset, eval_chunk, mesh)
        self._slice = jax.jit(lambda data, start: {
            name: jax.lax.dynamic_slice_in_dim(data[f"test_{name}"], start, eval_chunk)
            for name in ("images", "labels", "mask")}, out_shardings=sharding.batch_sharded(mesh))

    def train_spec(self, runs: int) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct((runs, self.batch_size), np.int32)

    def train_inputs(self, seeds: list[int], step: int, count: int):
        indices = job_batch_indices(seeds, step, count, self.num_train, self.batch_size,
                                    this_process_part(self.batch_size).slice)
        return sharding.host_local_to_global(indices, self.mesh, batch_axis=indices.ndim - 1)

    def eval_batches(self) -> Iterator[dict]:
        for start in range(0, self.data["test_labels"].shape[0], self.eval_chunk):
            yield self._slice(self.data, np.int32(start))

    def start(self, seeds: list[int], step: int, saved_states: list[dict | None]) -> None:
        del seeds, step, saved_states  # the indices are computed for each step

    def iterator_state(self, run: int) -> dict | None:
        del run
        return None

    def close(self) -> None:
        pass


class StreamInputs:
    """Batches decoded and augmented on the host by grain, one pipeline per run (its seed's batch order)."""

    kind = "stream"

    def __init__(self, dataset, batch_size: int, eval_chunk: int, mesh, *, num_steps: int, workers: int,
                 eval_size: int = 0):
        self.dataset, self.batch_size, self.eval_chunk, self.mesh = dataset, batch_size, eval_chunk, mesh
        self.num_steps, self.workers = num_steps, workers
        self.eval_size = eval_size or dataset.image_size   # the student's side (train crops: the larger view)
        self.num_train, self.num_classes = dataset.num_train, dataset.num_classes
        self.image_shape, self.mean, self.std = dataset.image_shape, dataset.mean, dataset.std
        self.data: dict = {}
        self.iterators: list = []
        self.step = 0

    def train_spec(self, runs: int) -> dict:
        return {"images": jax.ShapeDtypeStruct((runs, self.batch_size) + self.image_shape, np.uint8),
                "labels": jax.ShapeDtypeStruct((runs, self.batch_size), np.int32)}

    def start(self, seeds: list[int], step: int, saved_states: list[dict | None]) -> None:
        """One iterator per run, at ``step``: restored from its saved grain state when it was saved with the
        same worker count, else started at ``step`` (the same batches: they are a function of (seed, step))."""
        self.close()
        self.step = step
        for seed, saved in zip(seeds, saved_states):
            same_layout = saved is not None and saved.get("workers") == self.workers and saved.get("step") == step
            first = 0 if same_layout else step
            pipeline = train_pipeline(self.dataset.train, seed=seed, global_batch=self.batch_size,
                                      num_steps=self.num_steps, part=this_process_part(self.batch_size),
                                      image_size=self.dataset.image_size, workers=self.workers, first_step=first)
            iterator = iter(pipeline)
            if same_layout:
                iterator.set_state(saved["grain"])
            elif saved is not None:
                logging.info("input pipeline restarted at step %d (saved with %s workers, now %d)", step,
                             saved.get("workers"), self.workers)
            self.iterators.append(iterator)

    def iterator_state(self, run: int) -> dict:
        """What a checkpoint of run ``run`` saves: the step, the worker count and grain's iterator state."""
        return {"step": self.step, "workers": self.workers, "grain": self.iterators[run].get_state()}

    def train_inputs(self, seeds: list[int], step: int, count: int) -> dict:
        if step != self.step:
            raise RuntimeError(f"the input pipeline is at step {self.step}, step {step} was asked for")
        local = [[next(iterator) for iterator in self.iterators] for _ in range(count)]
        self.step += count
        batch = {name: np.stack([np.stack([run[name] for run in call]) for call in local])
                 for name in ("images", "labels")}
        return sharding.host_local_to_global(batch, self.mesh, batch_axis=2)

    def eval_batches(self) -> Iterator[dict]:
        part = this_process_part(self.eval_chunk)
        iterator = iter(eval_pipeline(self.dataset.eval, chunk=self.eval_chunk, part=part,
                                      image_size=self.eval_size, workers=self.workers))
        try:
            for batch in iterator:
                yield sharding.host_local_to_global(batch, self.mesh)
        finally:
            close_pipeline(iterator)

    def close(self) -> None:
        for iterator in self.iterators:
            close_pipeline(iterator)
        self.iterators = []


def make_inputs(kind: str, dataset: Any, batch_size: int, eval_chunk: int, mesh, *, num_steps: int,
                workers: int, eval_size: int = 0):
    """:class:`DeviceInputs` or :class:`StreamInputs` over ``dataset`` (in memory or streaming); streamed eval
    batches are decoded at ``eval_size`` (the student's side; 0: the dataset's), in-memory ones are resized in
    the eval step."""
    if kind == "device":
        return DeviceInputs(dataset, batch_size, eval_chunk, mesh)
    std_logging.getLogger("grain").setLevel(std_logging.WARNING)
    return StreamInputs(dataset, batch_size, eval_chunk, mesh, num_steps=num_steps, workers=workers,
                        eval_size=eval_size)

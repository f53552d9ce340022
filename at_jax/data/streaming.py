"""The streaming input pipeline: grain reads, decodes and augments batches on the host, in worker processes.

Train: element ``s`` of the pipeline is this process's part of train step ``s``'s batch. The examples of a
step are :func:`at_jax.data.batch_order.batch_indices` (the order the on-device path uses), process ``p`` of
``P`` reads slots ``[p * B / P, (p + 1) * B / P)`` of the global batch of ``B`` and nothing else, and the
augmentation of slot ``j`` of step ``s`` draws from ``default_rng([seed, s, j])``: a step's global batch is a
function of (seed, step), the same for any number of processes and workers. The iterator's state (grain's
``get_state``) is saved with every checkpoint and restored on resume.

Eval: the eval split in chunks of ``chunk`` (the last one padded, with ``mask`` 0 on the padding), each
process reading its slice of every chunk.

``workers`` > 0 decodes in that many worker processes (``mp_prefetch``), each producing whole batches with
``threads`` decoding threads; 0 decodes in threads of this process (tests, small sets). ``threads=None``:
:func:`decoding_threads`.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import gc
import multiprocessing.pool
import os
import threading
import time
from typing import Any, Callable

import numpy as np

from at_jax.data.batch_order import batch_indices
from at_jax.data.host_augment import eval_image, train_image


@dataclasses.dataclass(frozen=True)
class ProcessPart:
    """The slots ``[start, start + size)`` of each global batch that this process reads."""
    start: int
    size: int

    @classmethod
    def of(cls, global_batch: int, process_index: int, process_count: int) -> "ProcessPart":
        size = global_batch // process_count
        return cls(process_index * size, size)

    @property
    def slice(self) -> slice:
        return slice(self.start, self.start + self.size)


def decoding_threads(workers: int, threads: int | None = None) -> int:
    """Decoding threads per batch: ``threads`` when given, else 1 in each worker process (the workers already
    fill the CPUs) and 4 when this process decodes alone (``workers`` = 0)."""
    return threads if threads is not None else (1 if workers > 0 else 4)


def _decode_all(function: Callable[[int], np.ndarray], count: int, threads: int) -> list[np.ndarray]:
    if threads <= 1:
        return [function(index) for index in range(count)]
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(function, range(count)))


class TrainBatch:
    """Step -> this process's part of the step's batch: ``{"images": uint8 (b, S, S, 3), "labels": int32 (b,)}``."""

    def __init__(self, source: Any, *, seed: int, global_batch: int, part: ProcessPart, image_size: int,
                 threads: int):
        self.source, self.seed, self.global_batch, self.part = source, seed, global_batch, part
        self.image_size, self.threads = image_size, threads

    def __call__(self, step: int) -> dict:
        step = int(step)
        indices = batch_indices(self.seed, step, len(self.source), self.global_batch)
        slots = range(self.part.start, self.part.start + self.part.size)
        records = [self.source[int(indices[slot])] for slot in slots]

        def decode(position: int) -> np.ndarray:
            record, slot = records[position], slots[position]
            rng = np.random.default_rng([self.seed, step, slot])
            return train_image(record["image"], record["name"], self.image_size, rng)

        images = _decode_all(decode, len(records), self.threads)
        return {"images": np.stack(images), "labels": np.asarray([r["label"] for r in records], np.int32)}


class EvalBatch:
    """Chunk -> this process's part of it: ``{"images", "labels", "mask"}`` (mask 0 past the last example)."""

    def __init__(self, source: Any, *, chunk: int, part: ProcessPart, image_size: int, threads: int):
        self.source, self.chunk, self.part, self.image_size, self.threads = source, chunk, part, image_size, threads

    def __call__(self, chunk_index: int) -> dict:
        start = int(chunk_index) * self.chunk + self.part.start
        positions = [p for p in range(start, start + self.part.size)]
        real = [p for p in positions if p < len(self.source)]
        records = [self.source[p] for p in real]
        decoded = _decode_all(lambda i: eval_image(records[i]["image"], records[i]["name"], self.image_size),
                              len(records), self.threads)
        images = np.zeros((self.part.size, self.image_size, self.image_size, 3), np.uint8)
        labels = np.zeros(self.part.size, np.int32)
        if records:
            images[:len(records)] = np.stack(decoded)
            labels[:len(records)] = [r["label"] for r in records]
        mask = (np.arange(self.part.size) < len(records)).astype(np.float32)
        return {"images": images, "labels": labels, "mask": mask}


def close_pipeline(iterator: Any) -> None:
    """Stops a pipeline iterator's workers and frees the shared memory of the batches they sent: those held in
    reference cycles (a collection) and those whose release grain queued on its deletion thread (waited for).

    "leaked shared_memory objects" at exit = blocks never unlinked. Two causes, both reproduced (2026-12-03):
    1. a release queued after the last wait here is dropped when multiprocessing's exit handler ends the
       deletion thread: the last eval batch's 3 blocks, freed after its pipeline's close (4 of 6 runs). Eval
       batches are now copied out of shared memory on arrival (:func:`eval_pipeline`): 0 in 86 runs since.
    2. a collected cycle holding a ``SharedMemoryArray`` and its ``SharedMemory`` runs both finalizers (PEP
       442): the array queues close + unlink on the deletion thread while the ``SharedMemory``'s ``__del__``
       closes the same descriptor here; the thread's ``os.close`` fails with EBADF and the unlink is skipped
       (1 block, 5 of 46 runs). :func:`collect_shared_memory` makes the releases synchronous: 0 in 40 runs."""
    close = getattr(iterator, "close", None)
    if close is None:
        return
    close()
    collect_shared_memory()


def collect_shared_memory() -> None:
    """A garbage collection in which grain releases shared-memory batches synchronously (no race with the
    ``SharedMemory`` finalizers; :func:`close_pipeline`), preceded and followed by a wait for grain's deletion
    thread, so that every batch released so far is unlinked when it returns.

    grain has no public call for either: its deletion thread is the private class attribute
    ``SharedMemoryArray._del_thread_pool`` (grain 0.2.x: a ``multiprocessing.pool.ThreadPool``; ``None`` makes
    ``__del__`` release in the calling thread). This function is the only use of that name, and
    tests/test_private_apis.py fails when the installed grain lacks it; without it, only the collection runs."""
    from grain.multiprocessing import SharedMemoryArray  # pylint: disable=import-outside-toplevel
    pool = getattr(SharedMemoryArray, "_del_thread_pool", None)
    if not isinstance(pool, multiprocessing.pool.ThreadPool):
        gc.collect()
        return
    pool.apply(int)   # a no-op queued behind every pending release
    SharedMemoryArray._del_thread_pool = None   # pylint: disable=protected-access
    try:
        gc.collect()
    finally:
        SharedMemoryArray._del_thread_pool = pool   # pylint: disable=protected-access
    pool.apply(int)


def _own_memory(batch: dict) -> dict:
    """``batch`` with every array copied into this process's memory (out of a worker's shared-memory block,
    which is then released at once)."""
    return {name: np.array(value) for name, value in batch.items()}


def default_workers() -> int:
    """Worker processes when ``dataset.workers`` is -1: the CPUs this process may use, at most 16."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(16, cpus))


def _exit_with_parent(parent: int, worker_index: int, worker_count: int) -> None:
    """Worker start-up: exit when the training process ``parent`` is gone (killed with SIGKILL, its workers
    are orphaned; also when it died while this worker was starting)."""
    del worker_index, worker_count

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)  # pylint: disable=protected-access

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _pipeline(elements: Any, workers: int):
    import grain  # pylint: disable=import-outside-toplevel
    from absl import flags  # pylint: disable=import-outside-toplevel
    if not flags.FLAGS.is_parsed():  # grain reads its settings from absl flags; library callers parse none
        flags.FLAGS.mark_as_parsed()
    dataset = elements.to_iter_dataset(grain.ReadOptions(num_threads=1 if workers else 2, prefetch_buffer_size=2))
    if workers > 0:
        dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=2),
                                      worker_init_fn=functools.partial(_exit_with_parent, os.getpid()))
    return dataset


def train_pipeline(source: Any, *, seed: int, global_batch: int, num_steps: int, part: ProcessPart,
                   image_size: int, workers: int, threads: int | None = None, first_step: int = 0):
    """grain ``IterDataset`` of this process's batches of steps first_step .. num_steps - 1 (module docstring)."""
    import grain  # pylint: disable=import-outside-toplevel
    elements = grain.MapDataset.range(first_step, num_steps).map(
        TrainBatch(source, seed=seed, global_batch=global_batch, part=part, image_size=image_size,
                   threads=decoding_threads(workers, threads)))
    return _pipeline(elements, workers)


def eval_pipeline(source: Any, *, chunk: int, part: ProcessPart, image_size: int, workers: int,
                  threads: int | None = None):
    """grain ``IterDataset`` of this process's part of every eval chunk (the last one padded)."""
    import grain  # pylint: disable=import-outside-toplevel
    elements = grain.MapDataset.range(-(-len(source) // chunk)).map(
        EvalBatch(source, chunk=chunk, part=part, image_size=image_size, threads=decoding_threads(workers, threads)))
    dataset = _pipeline(elements, workers)
    return dataset.map(_own_memory) if workers > 0 else dataset   # close_pipeline says why (cause 1)

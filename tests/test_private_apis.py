"""The private names at_jax still relies on exist in the installed libraries (an upgrade that removes one fails
here, saying what to replace), and the public routes that replaced the others keep working."""
import multiprocessing.pool
import pickle
from multiprocessing import shared_memory

import grain
import numpy as np
import pytest

from at_jax.data import safe_pickle, streaming


def test_grain_still_has_the_shared_memory_deletion_thread():
    from grain.multiprocessing import SharedMemoryArray  # pylint: disable=import-outside-toplevel
    version = getattr(grain, "__version__", "installed")
    SharedMemoryArray.enable_async_del(1)
    assert isinstance(getattr(SharedMemoryArray, "_del_thread_pool", None), multiprocessing.pool.ThreadPool), (
        f"grain {version} keeps no SharedMemoryArray._del_thread_pool ThreadPool: replace "
        "at_jax.data.streaming.collect_shared_memory (the only use) with what this grain offers to flush its "
        "queued shared-memory unlinks and to release synchronously, or 'leaked shared_memory objects' "
        "warnings return at exit")


def _array_in_a_cycle(SharedMemoryArray):  # pylint: disable=invalid-name
    """A grain shared-memory array (to be unlinked when collected) reachable only from a reference cycle."""
    array = SharedMemoryArray((64,), np.uint8)
    array.unlink_on_del()
    cycle: list = [array]
    cycle.append(cycle)
    return array.shm.name


def test_collection_unlinks_cycles_and_queued_releases():
    """Arrays released by reference count (queued on grain's thread) and arrays in a reference cycle are all
    unlinked when collect_shared_memory returns; grain's deletion thread is back in place afterwards."""
    from grain.multiprocessing import SharedMemoryArray  # pylint: disable=import-outside-toplevel
    SharedMemoryArray.enable_async_del(1)
    pool = SharedMemoryArray._del_thread_pool  # pylint: disable=protected-access
    names = [_array_in_a_cycle(SharedMemoryArray) for _ in range(20)]
    queued = SharedMemoryArray((64,), np.uint8)
    queued.unlink_on_del()
    names.append(queued.shm.name)
    del queued
    streaming.collect_shared_memory()
    for name in names:
        with pytest.raises(FileNotFoundError):
            shared_memory.SharedMemory(name=name)   # unlinked: it can no longer be opened
    assert SharedMemoryArray._del_thread_pool is pool  # pylint: disable=protected-access


@pytest.mark.parametrize("module", ["numpy.core.multiarray", "numpy._core.multiarray"])
def test_cifar_pickles_of_every_numpy_load_without_numpy_private_modules(module):
    """The reconstructor comes from ``ndarray.__reduce__`` (public); both module names pickles use resolve."""
    images = np.arange(24, dtype=np.uint8).reshape(2, 12)
    data = pickle.dumps({b"data": images, b"labels": [0, 1]}, protocol=3)
    current = safe_pickle._RECONSTRUCT.__module__.encode()   # pylint: disable=protected-access
    assert current in data, "numpy names its array reconstructor differently in pickles than in __reduce__"
    loaded = safe_pickle.load_restricted(data.replace(current, module.encode()))
    np.testing.assert_array_equal(loaded[b"data"], images)


def test_numpy_pickles_arrays_with_an_allowed_global():
    """The (module, name) the installed numpy writes for arrays is on safe_pickle's allow-list."""
    reconstruct = np.empty(0).__reduce__()[0]
    assert (reconstruct.__module__, reconstruct.__name__) in safe_pickle._ALLOWED_GLOBALS  # pylint: disable=W0212
    assert safe_pickle.load_restricted(pickle.dumps(np.ones(3, np.uint8), protocol=3)).tolist() == [1, 1, 1]


def test_eval_batches_from_workers_own_their_memory(tmp_path):
    """Eval batches leave shared memory as they arrive (see streaming.close_pipeline), so none outlives the
    pipeline's close."""
    from image_data import write_image_folder  # pylint: disable=import-outside-toplevel
    from at_jax.data.stream_sources import open_streaming  # pylint: disable=import-outside-toplevel
    dataset = open_streaming("image_folder", str(write_image_folder(tmp_path / "data", train_per_class=2,
                                                                    val_per_class=2)), image_size=8)
    iterator = iter(streaming.eval_pipeline(dataset.eval, chunk=4, part=streaming.ProcessPart(0, 4), image_size=8,
                                            workers=1))
    try:
        batches = list(iterator)
    finally:
        streaming.close_pipeline(iterator)
    assert len(batches) == 2 and batches[-1]["mask"].tolist() == [1, 1, 0, 0]
    for batch in batches:
        for value in batch.values():
            assert type(value) is np.ndarray and value.flags.owndata   # pylint: disable=unidiomatic-typecheck

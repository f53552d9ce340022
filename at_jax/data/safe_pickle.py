"""Reading the CIFAR python pickles without running code from the file.

A pickle can name any importable callable and have it called while loading (`__reduce__`);
`pickle.load` on an untrusted file is arbitrary code execution. The CIFAR "python version"
archives only need what rebuilds a numpy array (Python-2 pickles: dicts of byte strings, lists of
ints and one uint8 ndarray), so the unpickler below resolves exactly those globals and refuses
every other one before anything is called.
"""

from __future__ import annotations

import io
import pickle
from typing import Any, BinaryIO

import numpy as np

# numpy's array reconstructor, taken from the public pickle protocol (what ``ndarray.__reduce__`` names) rather
# than from numpy's private modules; pickles name it by module: "numpy.core.multiarray" (numpy < 2, and the
# CIFAR archives), "numpy._core.multiarray" (numpy 2), or wherever the installed numpy keeps it.
_RECONSTRUCT = np.empty(0).__reduce__()[0]

# (module, name) pairs the CIFAR files reference, mapped to the objects they stand for.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    (_RECONSTRUCT.__module__, _RECONSTRUCT.__name__): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references a global that is not on the allow-list."""


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only numpy array reconstruction and refuses everything else."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"refused to load global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refused a persistent id")


def load_restricted(file: BinaryIO | bytes) -> Any:
    """Unpickle `file` (or bytes) with `encoding='bytes'`, allowing only numpy array globals.

    Raises `UnsafePickleError` when the pickle names any other global (nothing is called), and
    the usual `pickle.UnpicklingError` / `EOFError` / ... when it is malformed.
    """
    if isinstance(file, (bytes, bytearray)):
        file = io.BytesIO(file)
    return RestrictedUnpickler(file, encoding="bytes").load()

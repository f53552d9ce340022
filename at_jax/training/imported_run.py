"""Weights trained elsewhere -> a finished at_jax run (shared by the torchvision and timm importers).

- :func:`read_state_dict`: a PyTorch state dict from a file, as numpy arrays, read safely: ``.safetensors``
  through the ``safetensors`` package's numpy API (no torch, no code can run), ``.pth`` / ``.bin`` / ``.pt``
  through ``torch.load(weights_only=True)`` (a pickle that would run code or build other objects is refused).
- :func:`check_new_workdir`: the workdir is writable and holds no run (checked before anything is read).
- :func:`write_run`: ``config.json`` (model, keywords, class count, the input normalisation and size the
  weights expect, where they came from), one checkpoint at step 0 in the layout of
  :func:`~at_jax.training.checkpoint.model_state`, and ``summary.json`` -- a finished run that works as
  ``teacher.workdir``, ``init.workdir`` and with ``at_jax.load_model``.

Everything is read and checked before the workdir is created, so a refused file leaves nothing behind.
"""
from __future__ import annotations

import json

import pickle
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from at_jax import models
from at_jax.errors import CheckpointError, WorkdirError
from at_jax.models.pytorch_weights import as_float32
from at_jax.run_files import CONFIG_FILE, SUMMARY_FILE, as_path, write_json
from at_jax.training.checkpoint import Checkpointer, model_state
from at_jax.training.workdir import check_writable, save_config

#: Keys under which training scripts nest the state dict (timm's and DeiT's checkpoints, Lightning).
_NESTED = ("state_dict", "model")


def _first_line(error: BaseException, default: str) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:160] if text else default


def _is_safetensors(weights: str, head: bytes) -> bool:
    """A ``.safetensors`` name, or the format's start: an 8-byte header length, then a JSON object."""
    return str(weights).endswith(".safetensors") or (len(head) >= 9 and head[8:9] == b"{")


def in_file_order(tensors: Mapping[str, Any], data: bytes) -> dict:
    """``tensors`` in the order they lie in the safetensors file ``data`` (by data offset; safetensors' writer lays
    them out by dtype and name), not the loader's own order, which varies from process to process: messages
    that name the first few keys are the same every time."""
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    return dict(sorted(tensors.items(), key=lambda item: tuple(header[item[0]]["data_offsets"])))


def _read_safetensors(weights: str, data: bytes) -> Mapping[str, Any]:
    try:
        from safetensors.numpy import load  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise CheckpointError("reading .safetensors files needs the safetensors package: "
                              "pip install safetensors") from None
    try:
        return in_file_order(load(data), data)
    except KeyError as error:  # a dtype numpy has no type for (safetensors' numpy API)
        raise CheckpointError(f"cannot read {weights}: it holds {error.args[0]} tensors, which numpy cannot "
                              "represent; save the weights as float32") from None
    except Exception as error:  # pylint: disable=broad-except  (truncated, not safetensors, bad header)
        raise CheckpointError(f"cannot read {weights} as a safetensors file ({type(error).__name__}: "
                              f"{_first_line(error, 'damaged')})") from None


def _read_torch(weights: str, path) -> Any:
    try:
        import torch  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise CheckpointError(f"reading {weights} needs torch (pip install torch; torchvision and timm are not "
                              "needed), or convert it to .safetensors") from None
    try:
        with path.open("rb") as file:
            return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"refused to load {weights}: it is a pickle that would run code or build objects "
                              f"other than tensors ({_first_line(error, 'not allowed')})") from None
    except Exception as error:  # pylint: disable=broad-except  (truncated zip, not a torch file, ...)
        raise CheckpointError(f"cannot read {weights} as a torch state dict ({type(error).__name__}: "
                              f"{_first_line(error, 'damaged')})") from None


def read_state_dict(weights: str) -> dict[str, np.ndarray]:
    """The state dict in ``weights`` (local path or URL), as float32 numpy arrays."""
    path = as_path(weights)
    if not path.is_file():
        raise CheckpointError(f"--weights {weights} is not a file")
    with path.open("rb") as file:
        head = file.read(16)
    if _is_safetensors(weights, head):
        loaded = _read_safetensors(weights, path.read_bytes())
    else:
        loaded = _read_torch(weights, path)
    for key in _NESTED:
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
    if not isinstance(loaded, Mapping) or not loaded or not all(hasattr(value, "shape")
                                                                 for value in loaded.values()):
        raise CheckpointError(f"{weights} does not hold a state dict of tensors")
    return {str(key): as_float32(value) for key, value in loaded.items()}


def check_new_workdir(workdir: str) -> None:
    """Raises unless ``workdir`` can be written and holds no run (an imported run is never overwritten)."""
    check_writable(workdir)
    if (as_path(workdir) / CONFIG_FILE).exists():
        raise WorkdirError(f"workdir {workdir} already holds a run; import into a new directory")


def template(model: str, num_classes: int, model_kwargs: Mapping[str, Any], image_size: int) -> Mapping:
    """The variable shapes (``jax.ShapeDtypeStruct``) of at_jax's ``model`` built for ``image_size`` inputs."""
    module = models.create(model, num_classes, **dict(model_kwargs))
    shape = (1, image_size, image_size, 3)
    return jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros(shape), train=False))


def write_run(workdir: str, model: str, model_kwargs: Mapping[str, Any], variables: Mapping, num_classes: int,
              dataset: Mapping[str, Any], imported_from: Mapping[str, Any]) -> dict:
    """Writes the finished run (``variables``: checked ``{"params"[, "batch_stats"]}``); returns its summary.
    ``dataset`` records the inputs the weights expect (name, mean, std[, image_size])."""
    parameters = int(sum(np.size(leaf) for leaf in jax.tree.leaves(variables["params"])))
    as_path(workdir).mkdir(parents=True, exist_ok=True)
    checkpointer = Checkpointer(workdir)
    checkpointer.save(0, model_state(variables["params"], variables.get("batch_stats", {})))
    checkpointer.close()
    record = {"model": model, "model_kwargs": dict(model_kwargs), "seed": 0, "dataset": dict(dataset),
              "imported_from": dict(imported_from)}
    save_config(workdir, record, num_classes)
    summary = {"model": model, "num_classes": num_classes, "parameters": parameters, "step": 0, "accuracy": None,
               "imported": True}
    write_json(as_path(workdir) / SUMMARY_FILE, summary)
    return summary

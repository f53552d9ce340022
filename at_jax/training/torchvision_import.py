"""A torchvision ResNet state dict -> a finished at_jax run (a teacher ready for ``teacher.workdir``).

Everything is checked before anything is written: torch reads the file with ``weights_only=True``, the
architecture is checked key by key and shape by shape (:mod:`at_jax.models.torchvision_weights`), and a
workdir that holds a run is refused.
"""
from __future__ import annotations

import pickle
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from at_jax import models
from at_jax.errors import CheckpointError, WorkdirError
from at_jax.models.torchvision_weights import IMAGENET_MEAN, IMAGENET_STD, variables_from_torchvision
from at_jax.run_files import CONFIG_FILE, SUMMARY_FILE, as_path, write_json
from at_jax.training.checkpoint import Checkpointer, model_state
from at_jax.training.workdir import check_writable, save_config


def read_state_dict(weights: str) -> Mapping[str, Any]:
    """The state dict in a .pth file, as numpy arrays (torch's safe loader; torchvision not needed)."""
    try:
        import torch  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise CheckpointError("reading .pth files needs torch: pip install torch (torchvision is not needed)") from None
    path = as_path(weights)
    if not path.is_file():
        raise CheckpointError(f"--weights {weights} is not a file")
    try:
        with path.open("rb") as file:
            loaded = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "not allowed"
        raise CheckpointError(f"refused to load {weights}: it is a pickle that would run code or build objects "
                              f"other than tensors ({first[:160]})") from None
    except Exception as error:  # pylint: disable=broad-except  (truncated zip, not a torch file, ...)
        raise CheckpointError(f"cannot read {weights} as a torch state dict ({type(error).__name__}: "
                              f"{str(error).splitlines()[0][:160] if str(error) else 'damaged'})") from None
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(hasattr(value, "shape") for value in loaded.values()):
        raise CheckpointError(f"{weights} does not hold a state dict of tensors")
    return {key: value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
            for key, value in loaded.items()}


def import_resnet(arch: str, weights: str, workdir: str) -> dict:
    """Reads ``weights`` and writes the run; returns its summary (model, class count, parameter count)."""
    check_writable(workdir)
    if (as_path(workdir) / CONFIG_FILE).exists():
        raise WorkdirError(f"workdir {workdir} already holds a run; import into a new directory")
    return write_imported_run(arch, read_state_dict(weights), workdir, source=str(weights))


def write_imported_run(arch: str, state_dict: Mapping[str, Any], workdir: str, source: str = "") -> dict:
    """A finished run in ``workdir`` holding a torchvision ``state_dict`` (numpy arrays) of ``arch``."""
    fc = state_dict.get("fc.weight")
    num_classes = int(fc.shape[0]) if fc is not None and np.ndim(fc) == 2 else 1000
    model = models.create(arch, num_classes)
    template = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)), train=False))
    variables = variables_from_torchvision(state_dict, template)
    parameters = int(sum(np.size(leaf) for leaf in jax.tree.leaves(variables["params"])))
    as_path(workdir).mkdir(parents=True, exist_ok=True)
    checkpointer = Checkpointer(workdir)
    checkpointer.save(0, model_state(variables["params"], variables["batch_stats"]))
    checkpointer.close()
    record = {"model": arch, "model_kwargs": {}, "seed": 0,
              "dataset": {"name": "imagenet", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
              "imported_from": {"torchvision": arch, "weights": source}}
    save_config(workdir, record, num_classes)
    summary = {"model": arch, "num_classes": num_classes, "parameters": parameters, "step": 0, "accuracy": None,
               "imported": True}
    write_json(as_path(workdir) / SUMMARY_FILE, summary)
    return summary

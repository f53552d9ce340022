"""A torchvision ResNet state dict -> a finished at_jax run (a teacher ready for ``teacher.workdir``).

Everything is checked before anything is written (:mod:`at_jax.training.imported_run`): the file is read
safely, the architecture is checked key by key and shape by shape (:mod:`at_jax.models.torchvision_weights`),
and a workdir that holds a run is refused.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from at_jax.models.torchvision_weights import IMAGENET_MEAN, IMAGENET_STD, variables_from_torchvision
from at_jax.training.imported_run import check_new_workdir, read_state_dict, template, write_run

#: torchvision's ImageNet input: the normalisation its weights expect and the train crop.
IMAGENET_INPUT = {"name": "imagenet", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "image_size": 224}


def import_resnet(arch: str, weights: str, workdir: str) -> dict:
    """Reads ``weights`` and writes the run; returns its summary (model, class count, parameter count)."""
    check_new_workdir(workdir)
    return write_imported_run(arch, read_state_dict(weights), workdir, source=str(weights))


def write_imported_run(arch: str, state_dict: Mapping[str, Any], workdir: str, source: str = "") -> dict:
    """A finished run in ``workdir`` holding a torchvision ``state_dict`` (numpy arrays) of ``arch``."""
    fc = state_dict.get("fc.weight")
    num_classes = int(fc.shape[0]) if fc is not None and np.ndim(fc) == 2 else 1000
    variables = variables_from_torchvision(state_dict, template(arch, num_classes, {}, 224))
    return write_run(workdir, arch, {}, variables, num_classes, IMAGENET_INPUT,
                     {"torchvision": arch, "weights": source})

"""A timm state dict -> a finished at_jax run (``teacher.workdir``, ``init.workdir``, ``at_jax.load_model``).

:data:`TIMM_MODELS` names the timm models at_jax builds exactly, with the at_jax model each becomes and the
inputs its default pretrained weights expect (timm's ``pretrained_cfg`` of the default tag: mean, std,
input size, crop fraction, interpolation; ``tests/make_fixtures_timm.py --check-full`` compares this table
with timm's). The file is read safely and mapped key by key and shape by shape
(:mod:`at_jax.training.imported_run`, :mod:`at_jax.models.timm_weights`) before anything is written.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from at_jax.errors import CheckpointError
from at_jax.models.timm_weights import variables_from_timm
from at_jax.models.torchvision_weights import IMAGENET_MEAN, IMAGENET_STD
from at_jax.training.imported_run import check_new_workdir, read_state_dict, template, write_run

HALF = (0.5, 0.5, 0.5)


@dataclasses.dataclass(frozen=True)
class TimmModel:
    """A timm model name's at_jax counterpart and the inputs of timm's default pretrained tag for it."""
    model: str                      # at_jax's name
    head: str                       # the classifier's weight key (its rows are the classes)
    tag: str                        # timm's default pretrained tag
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    image_size: int = 224
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    model_kwargs: tuple[tuple[str, Any], ...] = ()

    def input_record(self) -> dict:
        """The ``dataset`` entry of ``config.json``: what inputs the weights expect."""
        return {"name": "imagenet", "mean": list(self.mean), "std": list(self.std), "image_size": self.image_size,
                "crop_pct": self.crop_pct, "interpolation": self.interpolation}


TIMM_MODELS: dict[str, TimmModel] = {
    "vit_tiny_patch16_224": TimmModel("vit-ti/16", "head.weight", "augreg_in21k_ft_in1k", HALF, HALF, crop_pct=0.9,
                                      model_kwargs=(("image_size", 224),)),
    "deit_small_patch16_224": TimmModel("vit-s/16", "head.weight", "fb_in1k", crop_pct=0.9,
                                        model_kwargs=(("image_size", 224),)),
    "convnext_atto": TimmModel("convnext-atto", "head.fc.weight", "d2_in1k", crop_pct=0.875),
    "convnext_tiny": TimmModel("convnext-tiny", "head.fc.weight", "in12k_ft_in1k", crop_pct=0.95),
    "resnet18": TimmModel("resnet18", "fc.weight", "a1_in1k", crop_pct=0.95),
    "resnet50": TimmModel("resnet50", "fc.weight", "a1_in1k", crop_pct=0.95),
}


def spec_of(name: str) -> TimmModel:
    if name not in TIMM_MODELS:
        raise CheckpointError(f"unknown timm model {name!r}; at_jax imports {', '.join(TIMM_MODELS)}")
    return TIMM_MODELS[name]


def num_classes_of(spec: TimmModel, state_dict: Mapping[str, Any]) -> int:
    """The class count: the rows of the classifier's weight (1000 when it has none: the mapping then names
    what does not fit)."""
    head = state_dict.get(spec.head)
    return int(np.shape(head)[0]) if head is not None and np.ndim(head) == 2 else 1000


def import_timm(name: str, weights: str, workdir: str) -> dict:
    """Reads ``weights`` (a state dict of timm's ``name``) and writes the run; returns its summary."""
    spec_of(name)
    check_new_workdir(workdir)
    return write_timm_run(name, read_state_dict(weights), workdir, source=str(weights))


def write_timm_run(name: str, state_dict: Mapping[str, Any], workdir: str, source: str = "",
                   model_kwargs: Mapping[str, Any] | None = None) -> dict:
    """A finished run in ``workdir`` holding ``state_dict`` (numpy arrays) of timm's ``name``. ``model_kwargs``
    replaces the at_jax model's keywords (a reduced variant, e.g. ``{"depth": 2, "image_size": 32}``, for a
    timm model created with the same overrides)."""
    spec = spec_of(name)
    kwargs = dict(spec.model_kwargs) if model_kwargs is None else dict(model_kwargs)
    num_classes = num_classes_of(spec, state_dict)
    image_size = int(kwargs.get("image_size", spec.image_size))
    variables = variables_from_timm(state_dict, template(spec.model, num_classes, kwargs, image_size), spec.model)
    dataset = dict(spec.input_record(), image_size=image_size)
    return write_run(workdir, spec.model, kwargs, variables, num_classes, dataset,
                     {"timm": name, "timm_tag": spec.tag, "weights": source})

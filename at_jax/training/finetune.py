"""Fine-tuning: a student that starts from a finished run's weights, with parts of it frozen.

- ``init.workdir``: a finished run (or an imported torchvision model) of the same architecture. Every
  parameter and batch statistic of the student takes that run's value where the name and shape match; the
  rest (the classifier head when the class count differs) keeps its fresh initialisation.
- ``freeze.batch_norm = True``: batch norm in inference mode during training (the running statistics are
  used and never updated) and its scale and shift are not trained. The student's whole forward pass runs with
  ``train=False`` (so dropout is off too).
- ``freeze.modules = (prefix, ...)``: parameters under top-level modules whose name starts with one of the
  prefixes are not trained (e.g. ``("conv1", "bn1", "layer1_")``: a ResNet's stem and first group).
Frozen parameters get no update at all (``optax.set_to_zero``: neither gradient step nor weight decay).
"""
from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import jax
import numpy as np
import optax
from absl import logging
from flax import traverse_util

from at_jax.errors import ConfigError
from at_jax.training.checkpoint import load_run

#: Module names of batch-norm layers in the model zoo ("bn", "bn1", "downsample_bn", "fc1_bn", ...).
BATCH_NORM_NAME = re.compile(r"(^|_)bn\d*$")


def frozen_prefixes(freeze_config: Any) -> tuple[str, ...]:
    """``freeze.modules`` as a tuple of name prefixes (one string is one prefix)."""
    modules = freeze_config.get("modules", ()) or ()
    return (modules,) if isinstance(modules, str) else tuple(str(prefix) for prefix in modules)


def check_freeze(freeze_config: Any, model_params: Any, model_name: str) -> None:
    """Refuses a ``freeze.modules`` prefix that matches no top-level parameter module of the student, naming
    the modules there are (a prefix that froze nothing would train everything without a word)."""
    modules = sorted(model_params) if hasattr(model_params, "keys") else []
    for prefix in frozen_prefixes(freeze_config or {}):
        if not prefix or not any(name.startswith(prefix) for name in modules):
            raise ConfigError(f"freeze.modules {prefix!r} matches no module of {model_name}; its top-level "
                              f"modules: {', '.join(modules)}")


def is_frozen(path: Sequence[str], freeze_config: Any) -> bool:
    """Whether the student parameter at ``path`` (inside ``params["model"]``) is frozen by ``freeze``."""
    prefixes = frozen_prefixes(freeze_config)
    if path and any(path[0].startswith(prefix) for prefix in prefixes):
        return True
    return bool(freeze_config.get("batch_norm", False)) and any(BATCH_NORM_NAME.search(name) for name in path[:-1])


def freeze_transform(transform: optax.GradientTransformation, freeze_config: Any) -> optax.GradientTransformation:
    """``transform`` for the trained parameters, no update for the frozen ones (``params = {"model", ...}``)."""
    if not freeze_config or not (freeze_config.get("modules") or freeze_config.get("batch_norm")):
        return transform

    def labels(params: Any) -> Any:
        flat = traverse_util.flatten_dict(params)
        return traverse_util.unflatten_dict({
            path: "frozen" if path[0] == "model" and is_frozen(path[1:], freeze_config) else "trained"
            for path in flat})

    return optax.multi_transform({"trained": transform, "frozen": optax.set_to_zero()}, labels)


def load_pretrained(init_workdir: str, model_name: str) -> dict:
    """``{"params": ..., "batch_stats": ...}`` (host arrays) of the run that starts the student."""
    run = load_run(init_workdir, role="init")
    if run.config.get("model") != model_name:
        raise ConfigError(f"init.workdir {init_workdir} holds model {run.config.get('model')!r}, the student is "
                          f"{model_name!r}: start a model from weights of its own architecture")
    return {"params": run.params, "batch_stats": run.batch_stats or {}}


def start_from(state: dict, pretrained: dict, log: Callable[..., None] = logging.info) -> dict:
    """``state`` (stacked over runs) with the pretrained values wherever name and shape match; the moving
    average (``state["ema"]``, when kept) starts from the same values."""
    replaced, kept = 0, []
    result = dict(state, params=dict(state["params"]))
    for collection, target in (("params", state["params"]["model"]), ("batch_stats", state["batch_stats"])):
        flat, source = traverse_util.flatten_dict(target), traverse_util.flatten_dict(pretrained[collection])
        merged = {}
        for path, leaf in flat.items():
            value = source.get(path)
            if value is not None and tuple(np.shape(value)) == tuple(leaf.shape[1:]):
                merged[path] = jax.device_put(np.broadcast_to(np.asarray(value, leaf.dtype), leaf.shape), leaf.sharding)
                replaced += 1
            else:
                merged[path] = leaf
                kept.append("/".join(path))
        if collection == "params":
            result["params"]["model"] = traverse_util.unflatten_dict(merged)
        else:
            result["batch_stats"] = traverse_util.unflatten_dict(merged) if merged else state["batch_stats"]
    if not replaced:
        raise ConfigError("init.workdir matched none of the student's weights")
    log("started from pretrained weights: %d arrays taken, %d newly initialised (%s)", replaced, len(kept),
        ", ".join(kept[:4]) + (" ..." if len(kept) > 4 else ""))
    if "ema" in state:
        result["ema"] = {"params": result["params"]["model"], "batch_stats": result["batch_stats"]}
    return result

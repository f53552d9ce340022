"""The one place a dataset config (``config.dataset``: name, data_dir, seed, generator options) becomes data."""
from __future__ import annotations

import os
from typing import Any, Mapping

from at_jax.data.dataset import Dataset
from at_jax.data.registry import load_dataset

#: Keys of ``config.dataset`` that are not options of the dataset's loader.
COMMON_KEYS = ("name", "data_dir", "seed")


def dataset_from_config(dataset_config: Mapping[str, Any]) -> Dataset:
    """Loads the dataset a ``config.dataset`` (ConfigDict or a saved run's dict) describes; further keys
    are options of the named dataset's generator (e.g. the digits canvas)."""
    options = {key: value for key, value in dict(dataset_config).items() if key not in COMMON_KEYS}
    data_dir = dataset_config.get("data_dir") or None
    return load_dataset(dataset_config["name"], os.path.expanduser(data_dir) if data_dir else None,
                        seed=dataset_config.get("seed", 0), **options)

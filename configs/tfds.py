"""Any prepared TFDS image-classification set: ``--config=configs/tfds.py:NAME``, e.g. ``configs/tfds.py:mnist``,
``configs/tfds.py:cifar10``, ``configs/tfds.py:oxford_flowers102`` (NAME as TFDS spells it, ``name/config:version``
included; default mnist).

The data is ``dataset.name = "tfds:NAME"`` read from ``--config.dataset.data_dir`` (default ~/tensorflow_datasets,
prepared for random access: ``tfds build NAME --data_dir DIR --file_format=array_record``), held in memory or
streamed as its decoded size dictates (``dataset.pipeline = "auto"``). Its options are keys here, to override on the
command line (at_jax/data/tfds_sets.py): ``train_split`` ("train"), ``eval_split`` ("": test, else validation),
``image_key`` ("image"), ``label_key`` ("label"), ``image_size`` (0: the set's own square size, else 224),
``normalization`` ("auto": the data's own statistics in memory, ImageNet's when streamed).

The run keeps the embedded default's pipeline (the reason at_jax exists): a WRN-16-2 teacher, then WRN-16-1
students without and with AT (β = 1e3, the paper's CIFAR value), each 10 epochs of batch 128, SGD lr 0.1 × 0.2 at
50 % and 75 %. ``--config.pipeline= --config.loss.at_beta=0`` trains one model (``config.model``) instead, and
``--config.pipeline= --config.teacher.workdir=RUN`` one student from a finished teacher. These CIFAR-style WRNs suit
small images (MNIST, CIFAR, SVHN); for photographs at 224 use e.g. ``--config.model=resnet18
--config.teacher.model=resnet34``. Horizontal flips are on (``--config.augment.flip=off`` for digits and text).
"""
import dataclasses

from at_jax.data.tfds_sets import TFDS_PREFIX, TfdsOptions
from at_jax.default_config import get_config as get_base_config, set_dataset


def get_config(argument: str | None = None):
    name = (argument or "mnist").strip()
    name = name[len(TFDS_PREFIX):] if name.startswith(TFDS_PREFIX) else name
    if not name or "," in name or "=" in name:
        raise ValueError(f"configs/tfds.py takes one TFDS dataset name, e.g. configs/tfds.py:mnist; got {argument!r}")
    config = set_dataset(get_base_config(), TFDS_PREFIX + name)
    config.dataset.data_dir = "~/tensorflow_datasets"
    for key, value in dataclasses.asdict(TfdsOptions()).items():
        config.dataset[key] = value
    config.model = "wrn-16-1"
    config.teacher.model = "wrn-16-2"
    config.teacher.num_epochs = 0        # the embedded task's longer teacher does not apply here
    config.batch_size = 128
    config.num_epochs = 10
    config.log_every_steps = 100
    config.eval_every_steps = 0
    config.eval_batch_size = 500
    config.checkpoint_every_steps = 1000
    config.optimizer.learning_rate = 0.1
    config.optimizer.decay_at = (0.5, 0.75)
    config.optimizer.decay_factor = 0.2
    config.loss.at_beta = 1e3
    return config

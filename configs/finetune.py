"""Fine-tuning transfer (the paper's section 4.2, Table 4): ``--config=configs/finetune.py:ARGS``.

ARGS (all optional), e.g. ``student=resnet18,teacher=resnet34,method=at``:

  dataset  cub | scenes | folder   (default folder) read from ``--config.dataset.data_dir``: ``cub`` is the TFDS
                                    ``caltech_birds2011`` (a TFDS data dir built ``--file_format=array_record``;
                                    images cut to their bounding boxes, as the paper did); ``scenes`` and
                                    ``folder`` an image folder
                                    ``DIR/train/<class>/*``, ``DIR/val/<class>/*`` (MIT Indoor Scenes has no
                                    TFDS build: arrange its official train/test lists that way)
  student  resnet18 | resnet34 | resnet50   (default resnet18)
  teacher  resnet18 | resnet34 | resnet50   (default resnet34)
  method   none | at | kd                    (default none)

Both networks start from ImageNet weights (``--config.init.workdir``: a run written by ``python -m
at_jax.import_torchvision``, or any finished run of the same architecture) with a new classifier head for
the folder's classes; batch norm is frozen (inference statistics; scale and shift not trained) and so is the
first residual group with the stem (``freeze.modules``), as the paper did. The teacher is the fine-tuned
ResNet-34 (``--config.teacher.workdir``); AT (β = 1e3, F_sum^2, code form) is on the last two groups
(``loss.at_pairs = ((2, 2), (3, 3))``), KD uses T = 4, α = 0.9 (the CIFAR values: the paper gives none for
fine-tuning).

Recipe (ours; the paper does not give one): SGD momentum 0.9, lr 0.01 (fine-tuning from ImageNet weights:
a tenth of the from-scratch rate) × 0.1 at 50 % and 75 % of 40 epochs, weight decay 1e-4 (the ImageNet value),
batch 64, images resized to 224 on the shorter side and centre-cropped (``dataset.image_size``), then
reflect-pad 28 + random 224 crop + horizontal flip on the device (the paper: rescale to 256, random crop).
Not reproduced: fb.resnet.torch's scale / colour augmentation. The data are held in memory when the decoded
images fit in 2 GiB (``dataset.pipeline = "auto"``; CUB and Scenes at 224 px are ≈ 1-2 GB), else streamed
(``configs/imagenet.py``'s pipeline; the host then applies RandomResizedCrop + flip instead of the pad-crop).
Inputs are normalised with ImageNet's mean and std, what the imported torchvision weights expect.

Two commands (teacher, then student)::

    python -m at_jax.train --config=configs/finetune.py:student=resnet34 --workdir=runs/cub/resnet34 \\
        --config.dataset.data_dir=CUB_FOLDER --config.init.workdir=runs/imagenet/resnet34
    python -m at_jax.train --config=configs/finetune.py:student=resnet18,method=at --workdir=runs/cub/resnet18_at \\
        --config.dataset.data_dir=CUB_FOLDER --config.init.workdir=runs/imagenet/resnet18 \\
        --config.teacher.workdir=runs/cub/resnet34
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cifar import parse_arguments  # noqa: E402

from at_jax.default_config import get_config as get_base_config, set_dataset  # noqa: E402

DATASETS = ("cub", "scenes", "folder")
MODELS = ("resnet18", "resnet34", "resnet50")
METHODS = ("none", "at", "kd")


def get_config(argument: str | None = None):
    values = parse_arguments(argument, {"dataset": "folder", "student": "resnet18", "teacher": "resnet34",
                                        "method": "none"})
    for key, valid in (("dataset", DATASETS), ("student", MODELS), ("teacher", MODELS), ("method", METHODS)):
        if values[key] not in valid:
            raise ValueError(f"unknown {key} {values[key]!r}; valid: {', '.join(valid)}")
    config = set_dataset(get_base_config(), "caltech_birds2011" if values["dataset"] == "cub" else "image_folder")
    config.pipeline = ""
    config.teacher.num_epochs = 0        # the embedded task's longer teacher does not apply here
    config.run_name = f"{values['dataset']}/{values['student']}/{values['method']}"
    config.dataset.image_size = 224
    config.dataset.normalization = "imagenet"
    if values["dataset"] == "cub":
        config.dataset.bbox_crop = True
    config.model = values["student"]
    config.teacher.model = values["teacher"]
    config.batch_size = 64
    config.num_epochs = 40
    config.log_every_steps = 20
    config.eval_every_steps = 0
    config.eval_batch_size = 100
    config.checkpoint_every_steps = 500
    config.augment.pad = 28
    config.augment.flip = "on"
    config.optimizer.learning_rate = 0.01
    config.optimizer.weight_decay = 1e-4
    config.optimizer.decay_at = (0.5, 0.75)
    config.optimizer.decay_factor = 0.1
    config.freeze.batch_norm = True
    config.freeze.modules = ("conv1", "bn1", "layer1_")
    config.loss.at_beta = 1e3 if values["method"] == "at" else 0.0
    config.loss.at_pairs = ((2, 2), (3, 3))
    config.loss.kd_alpha = 0.9 if values["method"] == "kd" else 0.0
    config.loss.kd_temperature = 4.0
    return config

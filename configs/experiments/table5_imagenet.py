"""Table 5: ResNet-34 teaches ResNet-18 on ImageNet; none / AT (F_sum^2, last two groups), one seed each.

``python -m at_jax.experiment --config=configs/experiments/table5_imagenet.py --workdir=DIR
--config.base.dataset.data_dir=DATA --config.teacher_workdir=runs/imagenet/resnet34`` (a finished ResNet-34,
e.g. torchvision's weights imported with ``python -m at_jax.import_torchvision``; without it the teacher is
trained first, 100 epochs). Recipe and data: ``configs/imagenet.py``. The paper's top-1 errors are shown beside
ours (top-5: ResNet-18 10.8, AT 10.0, ResNet-34 8.3; ours are in each run's summary, ``top5_accuracy``).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from imagenet import get_config as imagenet_config  # noqa: E402  (configs/imagenet.py)

from at_jax.experiments.plan import make_experiment_config  # noqa: E402

# Top-1 error %: the AT paper (arXiv 1612.03928), Table 5. ResNet-18 and AT also in the authors' README
# (szagoruyko/attention-transfer README.md, "Pretrained model": ResNet-18 30.4, 10.8; ResNet-18-ResNet-34-AT
# 29.3, 10.0).
PAPER = {"none": 30.4, "at": 29.3, "teacher": 26.1}
METHODS = {"none": {}, "at": {"at_beta": 1e3, "at_pairs": ((2, 2), (3, 3))}}


def get_config():
    base = imagenet_config("student=resnet18,teacher=resnet34,method=none")
    setting = {"model": "resnet18", "teacher": {"model": "resnet34"}, "dataset": {"name": "imagenet"},
               "num_epochs": 100, "num_train_steps": -1, "batch_size": 256}
    return make_experiment_config(base, name="Table 5: ResNet-34 -> ResNet-18, ImageNet", methods=METHODS, seeds=1,
                                  paper_reference=PAPER, paper_setting=setting,
                                  description=__doc__.split("\n", 1)[0])

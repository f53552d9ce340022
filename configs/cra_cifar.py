"""WRN with Channel Reassessment Attention on CIFAR: ``--config=configs/cra_cifar.py:ARGS``.

ARGS (all optional), e.g. ``student=wrn-16-1-cra,teacher=wrn-16-2-cra,method=at,dataset=cifar10``:

  student  wrn-D-K-cra (CRA grid k = 4 on every block's residual branch) or any registry name
  teacher  a model name for transfer runs (needs ``--config.teacher.workdir``)
  method   none | at | kd | at+kd | factt
  dataset  cifar10 | cifar100                (default cifar10)

The CRA grid is ``config.model_kwargs.cra_grid`` (4, set for -cra students; override with e.g.
``--config.model_kwargs.cra_grid=2``).
The official attention-transfer CIFAR recipe (configs/cifar.py): SGD momentum 0.9, lr 0.1 x0.2 at
epochs 60/120/160 of 200, weight decay 5e-4, batch 128, pad-4 crop + flip.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cifar import cifar_config, parse_arguments  # noqa: E402

DATASETS = ("cifar10", "cifar100")
CIFAR_GRID = 4


def get_config(argument: str | None = None):
    values = parse_arguments(argument, {"student": "wrn-16-2-cra", "teacher": "wrn-40-2-cra",
                                        "method": "none", "dataset": "cifar10"})
    if values["dataset"] not in DATASETS:
        raise ValueError(f"unknown dataset {values['dataset']!r}; valid: {', '.join(DATASETS)}")
    config = cifar_config(values["dataset"], f"student={values['student']},teacher={values['teacher']},"
                                             f"method={values['method']}")
    if config.model.endswith("-cra"):
        config.model_kwargs.cra_grid = CIFAR_GRID
    return config

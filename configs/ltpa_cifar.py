"""Learn To Pay Attention on CIFAR (Jetley et al. 2018): ``--config=configs/ltpa_cifar.py:ARGS``.

ARGS (all optional), e.g. ``model=vgg-att3-concat-pc,dataset=cifar100`` or, to use an LTPA model as
an AT student, ``model=vgg,teacher=vgg-att3-concat-pc,method=at`` with ``--config.teacher.workdir``:

  model    vgg | vgg-att{2,3}-{concat,indep}-{pc,dp}   (default vgg-att3-concat-pc)
  dataset  cifar10 | cifar100                            (default cifar100)
  teacher  a model name for transfer runs               (default vgg-att3-concat-pc)
  method   none | at | kd | at+kd | factt               (default none; AT/KD weights as configs/cifar.py)

Recipe (the paper, and SaoYan/LearnToPayAttention train.py): SGD momentum 0.9, lr 0.1 halved every
25 epochs (decay_at = 25/300, 50/300, ..., 275/300 with decay_factor 0.5), 300 epochs, weight decay
5e-4, batch 128, pad-4 crop + horizontal flip. (The public code also runs 3 passes over the data per
"epoch"; the paper's 300 epochs are used here.) Reported error: CIFAR-100 VGG 30.62 ->
att3-concat-pc 22.97; CIFAR-10 VGG 7.77 -> att2-concat-pc 5.23.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cifar import cifar_config, parse_arguments  # noqa: E402

DATASETS = ("cifar10", "cifar100")
NUM_EPOCHS = 300
DECAY_EVERY_EPOCHS = 25


def get_config(argument: str | None = None):
    values = parse_arguments(argument, {"model": "vgg-att3-concat-pc", "dataset": "cifar100",
                                        "teacher": "vgg-att3-concat-pc", "method": "none"})
    if values["dataset"] not in DATASETS:
        raise ValueError(f"unknown dataset {values['dataset']!r}; valid: {', '.join(DATASETS)}")
    config = cifar_config(values["dataset"], f"student={values['model']},teacher={values['teacher']},"
                                             f"method={values['method']}")
    config.num_epochs = NUM_EPOCHS
    config.optimizer.learning_rate = 0.1
    config.optimizer.momentum = 0.9
    config.optimizer.weight_decay = 5e-4
    config.optimizer.decay_at = tuple(epoch / NUM_EPOCHS
                                      for epoch in range(DECAY_EVERY_EPOCHS, NUM_EPOCHS, DECAY_EVERY_EPOCHS))
    config.optimizer.decay_factor = 0.5
    return config

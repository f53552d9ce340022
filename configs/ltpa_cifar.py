"""Learn To Pay Attention on CIFAR as its authors trained it: ``--config=configs/ltpa_cifar.py:ARGS``.

ARGS (all optional), e.g. ``model=vgg-att3-concat-pc,dataset=cifar100`` or, to use an LTPA model as an AT
teacher, ``model=vgg,teacher=vgg-att3-concat-pc,method=at`` with ``--config.teacher.workdir``:

  model    vgg | vgg-att{2,3}-{concat,indep}-{pc,dp}   (default vgg-att3-concat-pc)
  dataset  cifar10 | cifar100                            (default cifar100)
  teacher  a model name for transfer runs               (default vgg-att3-concat-pc)
  method   none | at | kd | at+kd | factt               (default none; AT/KD weights as configs/cifar.py)

Recipe: the authors' Torch code (saumya-jetley/cd_ICLR18_LearnToPayAttention ``VGGNet/lua_source/
main_AttLevel3_1global.lua``; ``main.lua`` has the same values for the ``vgg`` baseline, as cifar.torch's
``train.lua``): ``cmd_params`` lines 16-22, batch 128, learningRate 1, learningRateDecay 1e-7, weightDecay 5e-4,
momentum 0.9, epoch_step 25, max_epoch 300; ``train()`` halves the rate when ``epoch % epoch_step == 0``, i.e. at
the start of epochs 25, 50, ..., 300 (after 24, 49, ..., 299 finished epochs: ``decay_at`` below, 12 halvings);
``data_aug`` flips half of each batch horizontally, with no crops.

The learning rate: Torch7 ``optim.sgd`` damps its momentum by default (torch/optim ``sgd.lua`` line 35,
``local damp = config.dampening or mom``; line 62, ``state.dfdx:mul(mom):add(1-damp, dfdx)``), so its velocity
is 0.1 times optax's (= PyTorch's) for momentum 0.9, and its ``learningRate = 1`` is ``learning_rate = 0.1``
here (only the first step differs: Torch takes it with the undamped gradient). Weight decay is added to the
gradient before the momentum in both. ``learningRateDecay`` 1e-7 (lr / (1 + 1e-7 * steps), 1.2% lower at the
end) is left out.

The attention models run with ``model_kwargs.gradient_averaging = True``: the authors' hand-written backward
(see at_jax/models/vgg_att.py). Not reproduced: the authors' data preprocessing (the repository's
``provider.lua``: RGB -> YUV, Y contrast-normalised locally, U and V standardised); at_jax's CIFAR loader
standardises RGB with the dataset mean and std. Reported error: CIFAR-100 VGG 30.62 -> att3-concat-pc 22.97;
CIFAR-10 VGG 7.77 -> att2-concat-pc 5.23.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cifar import cifar_config, parse_arguments  # noqa: E402

DATASETS = ("cifar10", "cifar100")
NUM_EPOCHS = 300
DECAY_EVERY_EPOCHS = 25
#: Torch lr 1 with momentum dampening 0.9 (see the module docstring).
LEARNING_RATE = 0.1


def get_config(argument: str | None = None):
    values = parse_arguments(argument, {"model": "vgg-att3-concat-pc", "dataset": "cifar100",
                                        "teacher": "vgg-att3-concat-pc", "method": "none"})
    if values["dataset"] not in DATASETS:
        raise ValueError(f"unknown dataset {values['dataset']!r}; valid: {', '.join(DATASETS)}")
    config = cifar_config(values["dataset"], f"student={values['model']},teacher={values['teacher']},"
                                             f"method={values['method']}")
    config.num_epochs = NUM_EPOCHS
    config.batch_size = 128
    config.optimizer.learning_rate = LEARNING_RATE
    config.optimizer.momentum = 0.9
    config.optimizer.nesterov = False
    config.optimizer.weight_decay = 5e-4
    config.optimizer.decay_at = tuple((epoch - 1) / NUM_EPOCHS
                                      for epoch in range(DECAY_EVERY_EPOCHS, NUM_EPOCHS + 1, DECAY_EVERY_EPOCHS))
    config.optimizer.decay_factor = 0.5
    config.augment.pad = 0          # no crops
    config.augment.flip = "on"      # horizontal flips
    if values["model"].startswith("vgg-att"):
        config.model_kwargs = {"gradient_averaging": True}
    return config

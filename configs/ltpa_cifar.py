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

The learning rate: Torch7 ``optim.sgd`` damps its momentum by default (torch/optim ``sgd.lua`` at commit
e2cf3f1: line 35, ``local damp = config.dampening or mom``; line 62, ``state.dfdx:mul(mom):add(1-damp, dfdx)``),
except on its first call, which copies the gradient in undamped (line 60); the authors' ``optimState`` sets no
dampening. With m = d = 0.9 and g_t the gradient (weight decay included) of step t, Torch's velocity is
u_1 = g_1, u_t = 0.9 u_(t-1) + 0.1 g_t; at_jax's (``optax.sgd`` after ``add_decayed_weights``,
at_jax/training/optimizer.py; = PyTorch's) is v_t = 0.9 v_(t-1) + g_t, v_0 = 0. Hence u_t = 0.1 v_t + 0.9^t g_1,
and Torch's step t at rate lr is at_jax's step at rate lr / 10 plus lr * 0.9^t * g_1: ``learningRate = 1`` is
``learning_rate = 0.1`` here for every gradient but the first. At a constant rate each later g_s moves the
weights by the same total in both (lr * 0.1 / (1 - 0.9) = lr / 10 / (1 - 0.9) = lr); g_1 moves them by 10 * g_1
in Torch (lr 1) and by 1 * g_1 here: the extra 9 * g_1 (90 % of it within the first 22 steps) is not reproduced.
Weight decay is added to the gradient before the momentum in both. ``learningRateDecay`` 1e-7
(lr / (1 + 1e-7 * steps), 1.2% lower at the end) is left out.

The attention models run with ``model_kwargs.gradient_averaging = True``: the authors' hand-written backward
(see at_jax/models/vgg_att.py). Not reproduced: the authors' data preprocessing (the repository's
``provider.lua``: RGB -> YUV, Y contrast-normalised locally, U and V standardised); at_jax's CIFAR loader
standardises RGB with the dataset mean and std.

Reported results. The LTPA paper (arXiv 1804.02391), Table 1, error %: CIFAR-100 VGG 30.62 -> (VGG-att3)-concat-pc
22.97; CIFAR-10 VGG 7.77 -> (VGG-att2)-concat-pc 5.23 (the CIFAR-10 values transcribed from a damaged copy of the
paper). The authors' repository records test accuracy % in comments of its scripts:
``VGGNet/run_expt_cifar100.sh`` (commit f04a981) "#Test cifar-100 (main)" (vgg_bn_drop) 69.29 and
"# Test cifar-100 (3level_1global)" 77.02, i.e. 30.71 and 22.98 % error; ``VGGNet/run_expt_cifar10.sh`` (commit
37f5a84) "#Test cifar-10 (main)" 92.3 and "# Test cifar-10 (2level_1global)" 94.58, i.e. 7.7 and 5.42 % error.
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

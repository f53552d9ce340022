"""A CI-sized run: WRN-10-1 on a small synthetic CIFAR-shaped set, a few steps. For smoke tests.

``python -m at_jax.train --config=configs/tiny.py --workdir=/tmp/tiny``
"""
from at_jax.default_config import get_config as get_base_config, set_dataset


def get_config(argument: str | None = None):
    del argument
    config = get_base_config()
    config.pipeline = ""
    config.teacher.num_epochs = 0        # the embedded task's longer teacher does not apply here
    config.model = "wrn-10-1"
    config.teacher.model = "wrn-10-1"
    set_dataset(config, "synthetic")
    config.dataset.num_train = 64
    config.dataset.num_test = 40
    config.dataset.image_size = 16
    config.batch_size = 16
    config.num_epochs = 1
    config.num_train_steps = 8
    config.log_every_steps = 2
    config.eval_every_steps = 4
    config.eval_batch_size = 16
    config.checkpoint_every_steps = 4
    config.loss.at_beta = 0.0
    config.optimizer.decay_at = (0.5,)
    config.progress = False
    config.metrics.attention_figure = False   # drawing it is a second of CPU a run; tests that look turn it on
    return config

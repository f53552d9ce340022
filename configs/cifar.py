"""The official CIFAR recipe (REFERENCE.md), shared by configs/cifar10.py and configs/cifar100.py.

SGD momentum 0.9 (no Nesterov), lr 0.1 x0.2 at epochs 60/120/160 of 200, weight decay 5e-4, batch 128,
reflect-pad 4 + crop + flip, AT beta 1e3 (p=2, mean over channels, l2-normalised), KD T=4 alpha=0.9.
Methods: none | at | kd | at+kd | factt. The transfer weight decays linearly to 0 over training
(``loss.beta_schedule = "linear"``, which scales the AT and F-ActT weights, not KD's) for F-ActT and for AT+KD: the
AT paper decays beta for F-ActT and "in case of combining AT with KD we decay it during training"; it does not
give the form of the decay, so the linear one is ours.
"""
import ml_collections

from at_jax.default_config import get_config as get_base_config, set_dataset

METHODS = ("none", "at", "kd", "at+kd", "factt")


def parse_arguments(argument: str | None, defaults: dict, methods: tuple = METHODS) -> dict:
    """``"student=wrn-16-1,teacher=wrn-16-2,method=at"`` -> dict over ``defaults`` (unknown keys refused)."""
    values = dict(defaults)
    for item in filter(None, (argument or "").split(",")):
        key, _, value = item.partition("=")
        if key not in values:
            raise ValueError(f"unknown config argument {key!r}; valid: {', '.join(values)}")
        values[key] = value
    if "method" in values and values["method"] not in methods:
        raise ValueError(f"unknown method {values['method']!r}; valid: {', '.join(methods)}")
    return values


def cifar_config(dataset: str, argument: str | None) -> ml_collections.ConfigDict:
    values = parse_arguments(argument, {"student": "wrn-16-1", "teacher": "wrn-16-2", "method": "none"})
    config = get_base_config()
    config.pipeline = ""
    config.teacher.num_epochs = 0        # the embedded task's longer teacher does not apply here
    set_dataset(config, dataset)
    config.dataset.data_dir = "~/tensorflow_datasets"
    config.model = values["student"]
    config.teacher.model = values["teacher"]
    config.batch_size = 128
    config.num_epochs = 200
    config.log_every_steps = 100
    config.eval_every_steps = 391 * 10
    config.eval_batch_size = 1000
    config.checkpoint_every_steps = 391 * 5
    config.optimizer.learning_rate = 0.1
    config.optimizer.momentum = 0.9
    config.optimizer.nesterov = False
    config.optimizer.weight_decay = 5e-4
    config.optimizer.decay_at = (60 / 200, 120 / 200, 160 / 200)
    config.optimizer.decay_factor = 0.2
    method = values["method"]
    config.loss.at_beta = 1e3 if "at" in method.split("+") else 0.0
    config.loss.kd_alpha = 0.9 if "kd" in method.split("+") else 0.0
    config.loss.kd_temperature = 4.0
    config.loss.factt_beta = 1e3 if method == "factt" else 0.0
    config.loss.beta_schedule = "linear" if method in ("factt", "at+kd") else "constant"
    return config

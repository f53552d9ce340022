"""The official CIFAR recipe, shared by configs/cifar10.py and configs/cifar100.py.

Source: the AT authors' szagoruyko/attention-transfer ``cifar.py`` (argparse defaults: batchSize 128, lr 0.1,
epochs 200, weightDecay 5e-4, epoch_step [60,120,160], lr_decay_ratio 0.2, randomcrop_pad 4, temperature 4;
``torch.optim.SGD(..., lr, 0.9, weight_decay=...)``, no Nesterov; ``at(x)`` = l2-normalised mean over channels
of x**2) and its README's commands (AT ``--beta 1e+3``, KD ``--alpha 0.9``). So: SGD momentum 0.9, lr 0.1 x0.2
at epochs 60/120/160 of 200, weight decay 5e-4, batch 128, reflect-pad 4 + crop + flip, AT beta 1e3 (p=2, mean
over channels, l2-normalised), KD T=4 alpha=0.9. Not reproduced: cifar.py at revision 083a612 zeroes
SGD's momentum buffers at each rate drop (ours keeps them), and its ``cv2.BORDER_REFLECT`` pad repeats the edge
pixel (at_jax/data/augment.py's reflect pad does not).

KD temperature: the AT paper (arXiv 1612.03928) states T = 4 for its ResNet transfers only; cifar.py, which
trains only WRNs, defaults to it. The NIN rows that reuse this recipe (configs/cifar10_nin_gradient.py,
configs/experiments/table1_nin.py, table3_*.py) keep T = 4: ours to choose, not the paper's.

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

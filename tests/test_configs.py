"""Every config file loads; the keys the trainer contract names exist; parameterised CIFAR recipes."""
import glob
import importlib.util
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIRED_KEYS = ("seed", "batch_size", "num_epochs", "num_train_steps", "log_every_steps", "eval_every_steps",
                 "checkpoint_every_steps", "model", "dataset.name", "dataset.data_dir", "teacher.model",
                 "teacher.workdir", "loss.at_beta", "loss.at_p", "loss.kd_alpha", "loss.kd_temperature",
                 "optimizer.learning_rate", "optimizer.momentum", "optimizer.nesterov",
                 "optimizer.weight_decay", "compute_dtype")


def load_config(path, argument=None):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(argument) if argument is not None else module.get_config()


RUN_CONFIGS = [p for p in sorted(glob.glob(os.path.join(REPO, "configs", "*.py")))
               if os.path.basename(p) != "cifar.py"]


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=os.path.basename)
def test_run_config_has_the_contract_keys(path):
    config = load_config(path)
    for key in REQUIRED_KEYS:
        node = config
        for part in key.split("."):
            assert part in node, f"{os.path.basename(path)} lacks {key}"
            node = node[part]


@pytest.mark.parametrize("method,at_beta,kd_alpha,factt_beta", [
    ("none", 0.0, 0.0, 0.0), ("at", 1e3, 0.0, 0.0), ("kd", 0.0, 0.9, 0.0), ("at+kd", 1e3, 0.9, 0.0),
    ("factt", 0.0, 0.0, 1e3)])
def test_cifar_recipe(method, at_beta, kd_alpha, factt_beta):
    config = load_config(os.path.join(REPO, "configs", "cifar100.py"),
                         f"student=wrn-16-1,teacher=wrn-40-1,method={method}")
    assert config.dataset.name == "cifar100" and config.model == "wrn-16-1"
    assert config.teacher.model == "wrn-40-1"
    assert (config.loss.at_beta, config.loss.kd_alpha, config.loss.factt_beta) == (at_beta, kd_alpha, factt_beta)
    assert config.num_epochs == 200 and config.batch_size == 128
    assert tuple(config.optimizer.decay_at) == (0.3, 0.6, 0.8) and config.optimizer.decay_factor == 0.2
    assert config.optimizer.weight_decay == 5e-4 and not config.optimizer.nesterov


def test_config_arguments_are_checked():
    with pytest.raises(ValueError, match="unknown method"):
        load_config(os.path.join(REPO, "configs", "cifar10.py"), "method=magic")
    with pytest.raises(ValueError, match="unknown config argument"):
        load_config(os.path.join(REPO, "configs", "cifar10.py"), "studnet=wrn-16-1")


def test_only_the_embedded_task_trains_its_teacher_longer():
    """teacher.num_epochs = 12 belongs to the default's cluttered-MNIST task; configs for other data reset it."""
    for path in RUN_CONFIGS:
        config = load_config(path)
        embedded = config.dataset.name == "cluttered_mnist"
        assert config.teacher.num_epochs == (12 if embedded else 0), os.path.basename(path)


def test_cluttered_mnist_config_switches_the_evaluated_digits():
    path = os.path.join(REPO, "configs", "cluttered_mnist.py")
    assert load_config(path).dataset.eval_split == "val"
    test = load_config(path, "split=test")
    assert test.dataset.eval_split == "test" and test.loss.at_beta == 300.0 and test.dataset.canvas_size == 40
    with pytest.raises(ValueError, match="unknown split"):
        load_config(path, "split=train")

"""Your own network: a flax module registered from a config file outside the repository, layers chosen by
path (``loss.at_layers``), ``python -m at_jax.inspect``."""
import json
import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from at_jax import models
from at_jax.errors import ConfigError
from at_jax.losses import build_objective
from at_jax.models.tap import Network, tap_layers, tappable_layers, usable_for_at
from trainer_utils import REPO, TINY_CONFIG, metrics_records, run_cli

USER_CONFIG = '''
"""A user's config file: a plain classifier (logits only), registered under the name my-cnn-{tag}."""
import flax.linen as nn
import jax.numpy as jnp

import at_jax.models
from at_jax.default_config import get_config as get_base_config, set_dataset


@at_jax.models.register("my-cnn-{tag}", "my-cnn-{tag}: a CNN of my own")
class MyCNN(nn.Module):
    num_classes: int
    width: int = 8

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Conv(self.width, (3, 3), name="conv1")(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Conv(2 * self.width, (3, 3), name="conv2")(x))
        return nn.Dense(self.num_classes, name="head")(jnp.mean(x, axis=(1, 2)))


def get_config():
    config = get_base_config()
    config.pipeline = ""
    config.model = "my-cnn-{tag}"
    config.teacher.model = "wrn-10-1"
    set_dataset(config, "synthetic")
    config.dataset.num_train, config.dataset.num_test, config.dataset.image_size = 64, 40, 16
    config.batch_size, config.num_train_steps, config.eval_batch_size = 16, 4, 16
    config.log_every_steps, config.eval_every_steps, config.checkpoint_every_steps = 2, 4, 4
    config.progress = False
    config.loss.at_beta = 0.0
    return config
'''


def user_config(directory, tag: str) -> str:
    path = directory / f"my_config_{tag}.py"
    path.write_text(USER_CONFIG.format(tag=tag))
    return str(path)


class LogitsOnly(nn.Module):
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.BatchNorm(use_running_average=not train, name="bn")(nn.Conv(4, (3, 3), name="conv")(x))
        return nn.Dense(self.num_classes, name="head")(jnp.mean(nn.relu(x), axis=(1, 2)))


def test_a_logits_only_module_gets_the_zoo_interface_and_named_layers():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 3))
    network = Network(LogitsOnly())
    (logits, features), variables = network.init_with_output(jax.random.PRNGKey(1), x, train=False)
    assert logits.shape == (2, 10) and features == ()
    tapped = tap_layers(network, ["head", "conv"])
    (tapped_logits, (head, conv)), updates = tapped.apply(variables, x, train=True, mutable=["batch_stats"])
    assert head.shape == (2, 10) and conv.shape == (2, 8, 8, 4) and "batch_stats" in updates
    np.testing.assert_allclose(tapped.apply(variables, x, train=False)[0], logits, rtol=1e-6)
    np.testing.assert_allclose(head, tapped_logits, rtol=1e-6)   # the head's output is the logits
    with pytest.raises(ConfigError, match=r"layer 'nope' does not exist in LogitsOnly; its layers: conv, bn, head"):
        tap_layers(network, ["nope"]).apply(variables, x, train=False)


def test_named_layers_are_the_zoo_features_with_no_extra_compute():
    model = models.create("wrn-10-1", 10)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 3))
    variables = model.init(jax.random.PRNGKey(1), x, train=False)
    tapped = tap_layers(model, ["group0_block0", "group1_block0", "group2_block0"])

    def loss(network, params):
        logits, features = network.apply({**variables, "params": params}, x, train=False)
        return jnp.sum(logits) + sum(jnp.sum(feature ** 2) for feature in features)

    own, named = model.apply(variables, x, train=False)[1], tapped.apply(variables, x, train=False)[1]
    for mine, theirs in zip(own, named):
        np.testing.assert_array_equal(mine, theirs)
    flops = [jax.jit(jax.grad(lambda p, n=network: loss(n, p))).lower(variables["params"]).compile()
             .cost_analysis()["flops"] for network in (model, tapped)]
    assert flops[0] == flops[1]


def test_tappable_layers_and_what_at_can_use():
    layers = dict(tappable_layers(models.create("wrn-10-1", 10), (1, 16, 16, 3)))
    assert layers["group2_block0"] == (1, 4, 4, 64) and layers["fc"] == (1, 10)
    assert usable_for_at((1, 4, 4, 64)) and usable_for_at((1, 65, 192)) and usable_for_at((1, 64, 8))
    assert not usable_for_at((1, 10)) and not usable_for_at((1, 7, 8))


def test_register_builds_module_classes_and_guards_names(tmp_path):
    path = user_config(tmp_path, "unit")
    models.registry.load_source(path)
    assert models.registry.source_of("my-cnn-unit") == path
    network = models.create("my-cnn-unit", 5, dtype=jnp.float32, width=4)   # dtype: not a field, dropped
    assert isinstance(network, Network) and network.module.width == 4
    with pytest.raises(ConfigError, match="my-cnn-unit.*has no field depth"):
        models.create("my-cnn-unit", 5, depth=3)
    models.registry.load_source(path)          # the same file again: replaces, does not duplicate
    assert sum("my-cnn-unit" in text for text in models.available()) == 1
    with pytest.raises(ConfigError, match="at_jax's own"):
        models.register(r"wrn-(\d+)-(\d+)", "mine")(LogitsOnly)
    assert models.registry.source_of("wrn-10-1") == ""


def test_at_layers_option():
    objective = build_objective({"at_beta": 1.0, "at_layers": (("a/b", "c"), ("d", "/e/"))})
    assert objective.option("at_layers") == (("a/b", "c"), ("d", "e"))
    assert objective.option("at_pairs") == ((0, 0), (1, 1))
    with pytest.raises(ConfigError, match="not both"):
        build_objective({"at_layers": (("a", "b"),), "at_pairs": ((0, 0),)})
    with pytest.raises(ConfigError, match="pairs of module paths"):
        build_objective({"at_layers": ("a", "b")})


@pytest.mark.slow
def test_user_module_from_a_config_file_as_student_and_as_teacher(tmp_path, teacher_dir):
    path = user_config(tmp_path, "cli")
    student = tmp_path / "student"
    result = run_cli([f"--config={path}", f"--workdir={student}", f"--config.teacher.workdir={teacher_dir}",
                      "--config.loss.at_beta=1000", "--config.loss.at_layers=(('conv2','group1_block0'),"
                      "('conv1','group0_block0'))"])
    assert result.returncode == 0, result.stderr[-2000:]
    records = [record for record in metrics_records(student) if "train/at/1" in record]
    assert records and all(record["train/at/0"] > 0 and record["train/at/1"] > 0 for record in records)
    assert json.loads((student / "config.json").read_text())["model_source"] == path
    teacher = tmp_path / "user_teacher"     # the user's model trained plain, then teaching a zoo student
    assert run_cli([f"--config={path}", f"--workdir={teacher}"]).returncode == 0
    zoo_student = tmp_path / "zoo_student"
    result = run_cli([f"--config={TINY_CONFIG}", f"--workdir={zoo_student}", f"--config.teacher.workdir={teacher}",
                      "--config.teacher.model=my-cnn-cli", "--config.num_train_steps=4", "--config.loss.at_beta=1000",
                      "--config.loss.at_layers=(('group1_block0','conv2'),)"])  # a fresh process: found by its file
    assert result.returncode == 0, result.stderr[-2000:]
    assert all(record["train/at"] > 0 for record in metrics_records(zoo_student) if "train/at" in record)


def test_layers_that_do_not_exist_and_models_without_features_are_refused(tmp_path, run_main, capsys,
                                                                         teacher_dir):
    path = user_config(tmp_path, "errors")
    workdir = tmp_path / "x"
    common = [f"--config={path}", f"--workdir={workdir}", f"--config.teacher.workdir={teacher_dir}",
              "--config.loss.at_beta=1000"]

    def cli_error(args):   # the teacher's INFO line comes first, the error is the last line
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            run_main(args)
        lines = capsys.readouterr().err.strip().splitlines()
        assert exited.value.code == 2 and lines[-1].startswith("at_jax: error: ") and "Traceback" not in lines
        return lines[-1]

    message = cli_error(common + ["--config.loss.at_layers=(('conv2','group9'),)"])
    assert "layer 'group9' does not exist in wrn-10-1; its layers: conv0, group0_block0/bn0" in message
    message = cli_error(common + ["--config.loss.at_layers=(('conv7','group0_block0'),)"])
    assert "layer 'conv7' does not exist in my-cnn-errors; its layers: conv1, conv2, head" in message
    message = cli_error(common)
    assert "no feature pair to transfer; name layers with loss.at_layers" in message
    assert not workdir.exists()


def inspect_cli(*args):
    return subprocess.run([sys.executable, "-m", "at_jax.inspect", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def test_inspect_lists_paths_shapes_and_at_use(tmp_path):
    result = inspect_cli("--model=wrn-10-1", "--image-size=16", "--num-classes=10")
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    rows = {line[0]: (" ".join(line[1:-2]), line[-1]) for line in lines}
    assert rows["group2_block0"] == ("(1, 4, 4, 64)", "yes") and rows["fc"] == ("(1, 10)", "no")
    assert all(line[-2] == "at:" for line in lines)
    result = inspect_cli("--model=my-cnn-inspect", f"--config={user_config(tmp_path, 'inspect')}", "--channels=1")
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["conv1", "conv2", "head"]
    result = inspect_cli("--model=no-such-net")
    assert result.returncode == 2 and result.stderr.startswith("at_jax: error: unknown model 'no-such-net'")

"""The trainer end to end on CI-sized settings: a real run, teacher -> student with every term, bad input."""
import json
import math
import os

import jax
import numpy as np
import pytest

from at_jax.training.checkpoint import CheckpointError, Checkpointer
from at_jax.errors import NonFiniteLossError
from at_jax.errors import ConfigError, UserError
from at_jax.training import train_and_evaluate
from at_jax.data.batch_order import batch_indices
from at_jax.errors import WorkdirError
from trainer_utils import (TINY_CONFIG, deterministic_records, metrics_records, run_cli, tiny_config,
                           tree_digest)


def test_short_run_writes_everything(teacher_dir):
    summary = json.load(open(os.path.join(teacher_dir, "summary.json")))
    assert summary["step"] == 8 and 0.0 <= summary["accuracy"] <= 1.0
    records = metrics_records(teacher_dir)
    train_steps = [r["step"] for r in records if "train/total" in r]
    assert train_steps == [2, 4, 6, 8]
    eval_records = [r for r in records if "eval/accuracy" in r]
    assert [r["step"] for r in eval_records] == [4, 8]
    assert eval_records[-1]["eval/accuracy"] == pytest.approx(summary["accuracy"])
    first = records[0]
    for key in ("train/total", "train/ce", "train/learning_rate", "images_per_second", "train/accuracy"):
        assert key in first and math.isfinite(first[key])
    # lr 0.1 for steps 0..3, x0.2 from step 4 (decay_at 0.5 of 8 steps)
    assert records[0]["train/learning_rate"] == pytest.approx(0.1)
    assert metrics_records(teacher_dir)[-2]["train/learning_rate"] == pytest.approx(0.02)
    saved = json.load(open(os.path.join(teacher_dir, "config.json")))
    assert saved["model"] == "wrn-10-1" and saved["num_classes"] == 10
    assert Checkpointer(teacher_dir, read_only=True).latest_step() == 8
    assert os.listdir(os.path.join(teacher_dir, "tensorboard"))


def test_rerun_of_finished_run_trains_nothing(teacher_dir):
    before = metrics_records(teacher_dir)
    summary = train_and_evaluate(tiny_config(), teacher_dir)
    assert summary["step"] == 8 and metrics_records(teacher_dir) == before


def test_student_with_every_term(teacher_dir, tmp_path):
    config = tiny_config(**{"loss.at_beta": 1e3, "loss.kd_alpha": 0.9, "loss.factt_beta": 10.0,
                            "loss.grad_at_beta": 1.0, "loss.grad_penalty_beta": 1.0,
                            "loss.flip_symmetry_beta": 1.0, "teacher.workdir": teacher_dir,
                            "num_train_steps": 4})
    summary = train_and_evaluate(config, str(tmp_path))
    assert summary["teacher"] == "wrn-10-1"
    record = metrics_records(tmp_path)[0]
    for term in ("at", "at/0", "at/1", "at/2", "kd", "factt", "grad_at", "grad_penalty", "flip_symmetry",
                 "ce", "task"):
        assert math.isfinite(record[f"train/{term}"]), term
    weighted = (record["train/task"] + 1e3 * record["train/at"] + 10.0 * record["train/factt"]
                + record["train/grad_at"] + record["train/grad_penalty"] + record["train/flip_symmetry"])
    assert record["train/total"] == pytest.approx(weighted, rel=1e-4)


def test_teacher_is_frozen(teacher_dir, tmp_path):
    before = Checkpointer(teacher_dir, read_only=True).restore(8)
    config = tiny_config(**{"loss.at_beta": 1e3, "teacher.workdir": teacher_dir, "num_train_steps": 2})
    train_and_evaluate(config, str(tmp_path))
    after = Checkpointer(teacher_dir, read_only=True).restore(8)
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert "checkpoints" in os.listdir(tmp_path)


def test_batch_order_depends_only_on_seed_and_step():
    a = batch_indices(3, 17, 100, 16)
    assert np.array_equal(a, batch_indices(3, 17, 100, 16))
    assert not np.array_equal(a, batch_indices(4, 17, 100, 16))
    epoch = np.concatenate([batch_indices(3, s, 100, 16) for s in range(6)])  # 6 steps/epoch
    assert len(set(epoch.tolist())) == 96


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    config = tiny_config(**{"optimizer.learning_rate": 1e12, "checkpoint_every_steps": 1,
                            "log_every_steps": 1})
    with pytest.raises(NonFiniteLossError, match="step"):
        train_and_evaluate(config, str(tmp_path))
    checkpointer = Checkpointer(str(tmp_path), read_only=True)
    last = checkpointer.latest_step()
    assert last is not None and last >= 1
    state = checkpointer.restore(last)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state["params"]))


@pytest.mark.parametrize("overrides,error,message", [
    ({"model": "wrn-17-1"}, ValueError, "6n\\+4"),
    ({"model": "vgg-99"}, ValueError, "unknown model"),
    ({"dataset.name": "imagenet-42"}, ValueError, "unknown dataset"),
    ({"batch_size": 0}, ConfigError, "positive"),
    ({"batch_size": -4}, ConfigError, "positive"),
    ({"optimizer.learning_rate": float("nan")}, ConfigError, "finite"),
    ({"optimizer.learning_rate": float("inf")}, ConfigError, "finite"),
    ({"loss.at_beta": 1e3, "teacher.workdir": "/nonexistent/teacher"}, CheckpointError, "does not exist"),
    ({"loss.kd_alpha": 1.5}, ConfigError, "kd_alpha"),
    ({"compute_dtype": "float8"}, ConfigError, "dtype"),
])
def test_bad_input_is_a_user_error(tmp_path, overrides, error, message):
    with pytest.raises(error, match=message) as raised:
        train_and_evaluate(tiny_config(**overrides), str(tmp_path / "run"))
    assert isinstance(raised.value, UserError)  # not merely a ValueError: the CLI prints it as one line
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_teacher_workdir_problems(teacher_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        train_and_evaluate(tiny_config(**{"loss.at_beta": 1.0, "teacher.workdir": str(empty)}),
                           str(tmp_path / "a"))
    with pytest.raises(CheckpointError, match="holds model"):
        train_and_evaluate(tiny_config(**{"loss.at_beta": 1.0, "teacher.workdir": teacher_dir,
                                          "teacher.model": "wrn-16-2"}), str(tmp_path / "b"))
    with pytest.raises(CheckpointError, match="classes"):
        train_and_evaluate(tiny_config(**{"loss.at_beta": 1.0, "teacher.workdir": teacher_dir,
                                          "dataset.num_classes": 5}), str(tmp_path / "c"))
    # A corrupt checkpoint: copy the teacher and damage every array file.
    import shutil
    corrupt = tmp_path / "corrupt"
    shutil.copytree(teacher_dir, corrupt)
    for root, _, files in os.walk(corrupt / "checkpoints"):
        for name in files:
            with open(os.path.join(root, name), "wb") as file:
                file.write(b"garbage")
    with pytest.raises(CheckpointError, match="unreadable|no checkpoints|not an at_jax"):
        train_and_evaluate(tiny_config(**{"loss.at_beta": 1.0, "teacher.workdir": str(corrupt)}),
                           str(tmp_path / "d"))


def test_workdir_problems_leave_files_alone(teacher_dir, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("mine")
    with pytest.raises(WorkdirError, match="not a directory"):
        train_and_evaluate(tiny_config(), str(a_file))
    assert a_file.read_text() == "mine"
    before = tree_digest(teacher_dir)
    with pytest.raises(WorkdirError, match="model"):
        train_and_evaluate(tiny_config(model="wrn-16-1"), teacher_dir)
    assert tree_digest(teacher_dir) == before
    if os.geteuid() != 0:  # root can write anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        os.chmod(locked, 0o500)
        with pytest.raises(WorkdirError, match="not writable"):
            train_and_evaluate(tiny_config(), str(locked / "run"))


def test_cli_errors_are_one_line_exit_2(tmp_path, cli_error):
    cases = [
        ["--workdir", str(tmp_path / "x"), f"--config={TINY_CONFIG}", "--config.no_such_key=1"],
        ["--workdir", str(tmp_path / "x"), f"--config={TINY_CONFIG}", "--config.model=resnet-7"],
        [f"--config={TINY_CONFIG}"],
        ["--workdir", str(tmp_path / "x"), "--config.no_such_key=1"],  # the embedded default
        ["--workdir", str(tmp_path / "x"), "--config=configs/cifar10.py:method=magic"],
        ["--workdir", str(tmp_path / "x"), "--config=configs/no_such_config.py"],
        ["--workdir", str(tmp_path / "x"), f"--config={TINY_CONFIG}", "--config.dataset.name=cifar10",
         f"--config.dataset.data_dir={tmp_path / 'no_data'}"],
        ["--workdir", str(tmp_path / "x"), f"--config={TINY_CONFIG}", "--config.pipeline=magic"],
    ]
    messages = [cli_error(args) for args in cases]
    for needle, message in zip(["no_such_key", "resnet-7", "--workdir", "no_such_key", "magic", "no_such_config",
                                "cifar10", "pipeline"], messages):
        assert needle in message, message
    assert not os.path.exists(tmp_path / "x" / "checkpoints")


def test_cli_error_on_eight_devices_is_one_line(tmp_path):
    """A batch that does not split over the devices: checked in a process with 8 CPU devices."""
    result = run_cli(["--workdir", str(tmp_path / "x"), f"--config={TINY_CONFIG}", "--config.batch_size=12",
                      "--config.dataset.name=synthetic"], devices=8)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("at_jax:")]
    assert errors == [lines[-1]] and "divisible" in lines[-1] and "Traceback" not in result.stderr


def test_config_file_errors_say_what_failed(tmp_path, cli_error):
    config_file = tmp_path / "raising.py"
    config_file.write_text("import at_jax.losses\n\ndef get_config():\n    at_jax.losses.no_such_function()\n")
    message = cli_error(["--workdir", str(tmp_path / "x"), f"--config={config_file}"])
    assert "no_such_function" in message and "unknown config key" not in message
    message = cli_error(["--workdir", str(tmp_path / "x"), f"--config={TINY_CONFIG}", "--config.loss.no_such=1"])
    assert "unknown config key" in message and "no_such" in message


def test_a_mistyped_config_key_is_named_in_plain_words(tmp_path, cli_error):
    workdir = tmp_path / "x"
    message = cli_error(["--workdir", str(workdir), "--config.los.at_beta=1"])
    assert message == "at_jax: error: unknown config key los.at_beta; did you mean loss.at_beta?"
    message = cli_error(["--workdir", str(workdir), f"--config={TINY_CONFIG}", "--config.loss.at_betaa=1"])
    assert message == "at_jax: error: unknown config key loss.at_betaa; did you mean loss.at_beta?"
    message = cli_error(["--workdir", str(workdir), f"--config={TINY_CONFIG}", "--config.loss.qqqqqq=1"])
    assert message.startswith("at_jax: error: unknown config key loss.qqqqqq; loss has: at_beta, at_form")
    message = cli_error(["--workdir", str(workdir), f"--config={TINY_CONFIG}", "--config.seed.x=1"])
    assert message == "at_jax: error: unknown config key seed.x: seed is a value, not a group of keys"
    assert "\\n" not in message and "'" not in message and not workdir.exists()


def test_names_that_match_nothing_are_refused_naming_what_exists(tmp_path, cli_error):
    workdir = tmp_path / "x"
    message = cli_error(["--workdir", str(workdir), f"--config={TINY_CONFIG}",
                         "--config.freeze.modules=('no_such_layer',)"])
    assert "freeze.modules 'no_such_layer' matches no module of wrn-10-1" in message
    assert "conv0" in message and "group0_block0" in message
    (tmp_path / "runs" / "teacher").mkdir(parents=True)
    (tmp_path / "runs" / "teacher" / "config.json").write_text("{}")
    missing = tmp_path / "runs" / "no_such_run"
    message = cli_error(["--workdir", str(workdir), f"--config={TINY_CONFIG}", f"--config.init.workdir={missing}"])
    assert message.endswith(f"no_such_run does not exist; runs in {tmp_path / 'runs'}: teacher")
    assert not workdir.exists()


def test_a_file_as_workdir_is_named_as_such_on_every_path(tmp_path, cli_error):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    message = cli_error(["--workdir", str(afile)])   # the default teacher-then-students run
    assert message == f"at_jax: error: workdir {afile} exists and is not a directory"
    message = cli_error(["--workdir", str(afile / "run"), f"--config={TINY_CONFIG}"])
    assert message == f"at_jax: error: workdir {afile / 'run'}: {afile} exists and is not a directory"
    assert afile.read_text() == "mine"


def test_internal_errors_keep_their_traceback(tmp_path, monkeypatch, run_main):
    """A bug (here a ValueError raised inside the trainer) is not turned into a one-line user error."""
    from at_jax import training  # pylint: disable=import-outside-toplevel

    def broken(config, workdir):
        raise ValueError("an internal shape bug")

    monkeypatch.setattr(training, "train_and_evaluate", broken)
    with pytest.raises(ValueError, match="internal shape bug"):
        run_main(["--workdir", str(tmp_path / "x"), f"--config={TINY_CONFIG}"])

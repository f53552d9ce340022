"""orbax checkpoints: the last few plus the best are kept; restore onto a target; teacher loading."""
import json

import jax.numpy as jnp
import numpy as np
import pytest

from at_jax.training.checkpoint import CheckpointError, Checkpointer, abstract_like, load_run


def _state(value):
    return {"step": jnp.asarray(value, jnp.int32), "params": {"model": {"w": jnp.full((3,), value, jnp.float32)}},
            "batch_stats": {"mean": jnp.zeros((3,))}, "opt_state": (jnp.ones(()),), "rng": jnp.zeros((2,), jnp.uint32)}


def test_keeps_last_few_and_best(tmp_path):
    checkpointer = Checkpointer(str(tmp_path), keep=2)
    for step, accuracy in zip(range(1, 6), [0.1, 0.9, 0.2, None, 0.3]):
        checkpointer.save(step, _state(step), metrics=None if accuracy is None else {"accuracy": accuracy})
    checkpointer.wait()
    assert sorted(checkpointer.all_steps()) == [2, 4, 5]
    assert checkpointer.best_step() == 2
    restored = checkpointer.restore(4, abstract_like(_state(0)))
    np.testing.assert_array_equal(restored["params"]["model"]["w"], np.full((3,), 4.0))
    assert restored["params"]["model"]["w"].dtype == jnp.float32


def test_load_teacher_reads_config_and_params(tmp_path):
    checkpointer = Checkpointer(str(tmp_path))
    checkpointer.save(7, _state(7))
    checkpointer.close()  # saves are asynchronous: close (or wait) before another process reads them
    (tmp_path / "config.json").write_text(json.dumps({"model": "wrn-10-1", "num_classes": 10}))
    teacher = load_run(str(tmp_path), role="teacher")
    assert teacher.step == 7 and teacher.config["model"] == "wrn-10-1"
    np.testing.assert_array_equal(np.asarray(teacher.params["w"]), np.full((3,), 7.0))


def test_load_teacher_errors(tmp_path):
    with pytest.raises(CheckpointError, match="teacher"):
        load_run("", role="teacher")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_run(str(tmp_path / "missing"), role="teacher")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_run(str(tmp_path), role="teacher")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="no checkpoints"):
        load_run(str(tmp_path), role="teacher")


def test_saves_are_asynchronous_and_wait_completes_them(tmp_path):
    checkpointer = Checkpointer(str(tmp_path))
    assert checkpointer.manager._options.enable_async_checkpointing  # pylint: disable=protected-access
    checkpointer.save(1, _state(1))
    checkpointer.wait()
    assert (tmp_path / "checkpoints" / "1").is_dir()
    assert not Checkpointer(str(tmp_path), read_only=True).manager._options.enable_async_checkpointing  # pylint: disable=protected-access
    checkpointer.close()


def test_retention_is_stated_once_jobs_keep_two_at_least():
    from at_jax.training.checkpoint import steps_to_keep  # pylint: disable=import-outside-toplevel
    assert steps_to_keep(3) == 3 and steps_to_keep(0) == 1
    assert steps_to_keep(1, job_size=4) == 2 and steps_to_keep(5, job_size=4) == 5


def test_resume_step_is_the_common_step_and_newer_ones_are_deleted(tmp_path):
    from at_jax.training.checkpoint import resume_step  # pylint: disable=import-outside-toplevel
    first, second = Checkpointer(str(tmp_path / "a"), keep=3), Checkpointer(str(tmp_path / "b"), keep=3)
    for step in (2, 4, 6):
        first.save(step, _state(step))
    for step in (2, 4):
        second.save(step, _state(step))
    first.wait(), second.wait()
    assert resume_step([first, second], [0, 1]) == 4
    assert sorted(first.all_steps()) == [2, 4] and sorted(second.all_steps()) == [2, 4]
    assert resume_step([first, second], [0]) == 4   # a stopped run (1) is not asked
    assert resume_step([Checkpointer(str(tmp_path / "empty"))], [0]) is None


def test_finished_summary_needs_every_step(tmp_path):
    from at_jax.training.checkpoint import finished_summary  # pylint: disable=import-outside-toplevel
    assert finished_summary(str(tmp_path), 8) is None
    (tmp_path / "summary.json").write_text(json.dumps({"step": 8, "accuracy": 0.5}))
    assert finished_summary(str(tmp_path), 8)["accuracy"] == 0.5
    assert finished_summary(str(tmp_path), 12) is None
    (tmp_path / "summary.json").write_text(json.dumps({"step": None, "stopped": "nan"}))
    assert finished_summary(str(tmp_path), 8) is None


def test_model_state_is_what_load_run_reads(tmp_path):
    from at_jax.training.checkpoint import model_state  # pylint: disable=import-outside-toplevel
    checkpointer = Checkpointer(str(tmp_path))
    checkpointer.save(0, model_state({"w": np.arange(3.0)}, {"mean": np.ones(2)}))
    checkpointer.close()
    (tmp_path / "config.json").write_text(json.dumps({"model": "wrn-10-1", "num_classes": 10}))
    run = load_run(str(tmp_path))
    np.testing.assert_array_equal(run.params["w"], np.arange(3.0))
    np.testing.assert_array_equal(run.batch_stats["mean"], np.ones(2))


def test_a_missing_run_names_the_runs_nearby(tmp_path):
    for name in ("teacher", "student", "sweep/seed_0"):
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"studnet does not exist; runs in .*: student, sweep/seed_0, teacher"):
        load_run(str(tmp_path / "studnet"), role="teacher")
    with pytest.raises(CheckpointError, match=r"no config.json.*runs in .*: student, sweep/seed_0, teacher"):
        load_run(str(tmp_path), role="init")

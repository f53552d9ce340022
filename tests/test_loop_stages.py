"""The stages of ``train_and_evaluate``: plan, the early return of a finished job, set up, configs, resume."""
import json
import os

import jax
import numpy as np
import pytest

import at_jax
from at_jax.errors import CheckpointError, ConfigError
from at_jax.experiments.teacher_students import teacher_then_students
from at_jax.training import loop, multi_run, setup
from at_jax.training.checkpoint import load_run
from trainer_utils import tiny_config, tree_digest


def test_plan_job_of_one_run_and_of_several(tmp_path):
    single = multi_run.plan_job(tiny_config(seed=4), str(tmp_path))
    assert single.size == 1 and single.run_dirs == (str(tmp_path),) and single.job_record is None
    assert single.seeds == [4] and single.run_records[0]["seed"] == 4
    job = multi_run.plan_job(tiny_config(parallel_runs=3, seed=4), str(tmp_path))
    assert job.run_dirs == tuple(str(tmp_path / f"seed_{s}") for s in (4, 5, 6))
    assert job.job_record["parallel_runs"] == 3 and all(r["parallel_runs"] == 0 for r in job.run_records)
    assert not os.listdir(tmp_path)  # planning writes nothing


def test_a_finished_run_returns_before_set_up_and_keeps_its_files(teacher_dir, monkeypatch):
    before = tree_digest(teacher_dir)

    def no_set_up(*args):
        raise AssertionError("a finished run must not be set up again")

    monkeypatch.setattr(loop, "set_up", no_set_up)
    # other bookkeeping settings (e.g. the checkpoint interval) do not make it another run, nor rewrite it
    summary = loop.train_and_evaluate(tiny_config(checkpoint_every_steps=2, log_every_steps=1), teacher_dir)
    assert summary["step"] == 8 and tree_digest(teacher_dir) == before
    saved = json.load(open(os.path.join(teacher_dir, "config.json")))
    assert saved["checkpoint_every_steps"] == 4 and saved["num_train_examples"] == 64


def test_finished_summary_needs_all_steps(teacher_dir):
    job = multi_run.plan_job(tiny_config(), teacher_dir)
    assert loop.finished_job_summary(tiny_config(), job)["step"] == 8
    assert loop.finished_job_summary(tiny_config(num_train_steps=12), job) is None  # a longer run resumes


def test_set_up_builds_what_the_loop_needs_and_writes_nothing(teacher_dir, tmp_path):
    config = tiny_config(**{"loss.at_beta": 10.0, "loss.kd_alpha": 0.5, "teacher.workdir": teacher_dir,
                            "parallel_runs": 2})
    job = multi_run.plan_job(config, str(tmp_path / "job"))
    built = setup.set_up(config, job)
    assert built.total_steps == 8 and built.steps_per_epoch == 4 and built.steps_per_call == 1
    assert built.objective.term_names == ("at", "kd") and built.teacher.name == "wrn-10-1"
    state = built.init_state(np.asarray(job.seeds, np.int32), built.teacher_variables)
    kernels = max(jax.tree.leaves(state["params"]["model"]), key=lambda leaf: leaf.size)
    assert kernels.shape[0] == 2 and not np.allclose(kernels[0], kernels[1])
    assert not os.path.exists(tmp_path / "job")


def test_set_up_refuses_feature_pairs_the_models_lack(teacher_dir, tmp_path):
    config = tiny_config(**{"loss.at_beta": 1.0, "loss.at_pairs": ((0, 7),), "teacher.workdir": teacher_dir})
    with pytest.raises(ConfigError, match="out of range"):
        loop.train_and_evaluate(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")


def test_load_model_of_a_finished_run(teacher_dir):
    model, variables = at_jax.load_model(teacher_dir)
    x = np.zeros((2, 16, 16, 3), np.float32)
    logits, features = model.apply(variables, x, train=False)
    assert logits.shape == (2, 10) and len(features) == 3
    run = load_run(teacher_dir)
    np.testing.assert_array_equal(jax.tree.leaves(variables["params"])[0], jax.tree.leaves(run.params)[0])


@pytest.mark.parametrize("problem", ["missing", "empty", "corrupt"])
def test_default_pipeline_refuses_a_teacher_workdir_it_cannot_use(tmp_path, problem, teacher_dir):
    given = tmp_path / "given"
    if problem == "empty":
        given.mkdir()
    elif problem == "corrupt":
        given.mkdir()
        (given / "config.json").write_text(open(os.path.join(teacher_dir, "config.json")).read())
        (given / "checkpoints").mkdir()
        (given / "checkpoints" / "8").mkdir()
        (given / "checkpoints" / "8" / "garbage").write_text("x")
    config = tiny_config(pipeline="teacher_then_students", **{"teacher.workdir": str(given)})
    with pytest.raises(CheckpointError):
        teacher_then_students(config, str(tmp_path / "demo"))
    assert not os.path.exists(tmp_path / "demo")


def test_default_pipeline_uses_the_given_teacher(teacher_dir, tmp_path):
    config = tiny_config(pipeline="teacher_then_students", num_train_steps=2,
                         **{"loss.at_beta": 10.0, "teacher.workdir": teacher_dir})
    summaries = teacher_then_students(config, str(tmp_path / "demo"))
    assert sorted(os.listdir(tmp_path / "demo")) == ["student", "student_at"]  # no teacher trained
    assert summaries["teacher"]["step"] == 8
    saved = json.load(open(tmp_path / "demo" / "student_at" / "config.json"))
    assert saved["teacher"]["workdir"] == teacher_dir and summaries["student_at"]["teacher"] == "wrn-10-1"

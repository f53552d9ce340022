"""``config.parallel_runs``: S students in one vmapped program, each equal to its single run, with its own
directory, metrics, checkpoints and summary; sweeps of a loss weight; resume; a diverging run of a job."""
import json
import os
import shutil

import jax
import numpy as np
import pytest

from at_jax.training import multi_run as parallel_runs
from at_jax.training.checkpoint import CheckpointError, Checkpointer, load_run
from at_jax.run_files import read_metrics
from at_jax.errors import ConfigError
from at_jax.training import train_and_evaluate
from at_jax.errors import WorkdirError
from trainer_utils import deterministic_records, run_cli, tiny_config

STEPS = {"num_train_steps": 4, "log_every_steps": 2, "checkpoint_every_steps": 2, "eval_every_steps": 2,
         "progress": False}


def job_config(**overrides):
    return tiny_config(**{**STEPS, **overrides})


def assert_same_run(parallel_dir, single_dir, rtol=2e-5):
    """Same metrics records (wall-clock fields aside), eval numbers and final parameters."""
    parallel_records, single_records = deterministic_records(parallel_dir), deterministic_records(single_dir)
    assert [sorted(r) for r in parallel_records] == [sorted(r) for r in single_records]
    for mine, theirs in zip(parallel_records, single_records):
        for key, value in theirs.items():
            np.testing.assert_allclose(mine[key], value, rtol=rtol, atol=1e-6, err_msg=key)
    mine, theirs = (Checkpointer(d, read_only=True) for d in (parallel_dir, single_dir))
    assert mine.all_steps() == theirs.all_steps()
    a, b = mine.restore(mine.latest_step()), theirs.restore(theirs.latest_step())
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5),
                 a["params"], b["params"])


@pytest.fixture(scope="module")
def seed_job(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("job") / "seeds")
    return workdir, train_and_evaluate(job_config(parallel_runs=2, seed=5), workdir)


def test_seed_job_runs_equal_single_runs(seed_job, tmp_path):
    workdir, summary = seed_job
    assert sorted(os.listdir(workdir)) == ["config.json", "seed_5", "seed_6", "summary.json"]
    single = train_and_evaluate(job_config(seed=6), str(tmp_path / "single"))
    assert_same_run(os.path.join(workdir, "seed_6"), str(tmp_path / "single"))
    run = summary["runs"]["seed_6"]
    assert run["seed"] == 6 and run["accuracy"] == pytest.approx(single["accuracy"])
    assert run["eval_loss"] == pytest.approx(single["eval_loss"], rel=1e-5)
    # the two runs really differ (own init, batch order, augmentation)
    first, second = (read_metrics(os.path.join(workdir, name, "metrics.jsonl")) for name in ("seed_5", "seed_6"))
    assert first[0]["train/total"] != second[0]["train/total"]


def test_seed_job_files_and_summary(seed_job):
    workdir, summary = seed_job
    accuracies = [summary["runs"][name]["accuracy"] for name in ("seed_5", "seed_6")]
    assert summary["parallel_runs"] == 2 and summary["finished_runs"] == 2 and summary["step"] == 4
    assert summary["accuracy"] == pytest.approx(np.median(accuracies))
    assert summary["accuracy_min"] == min(accuracies) and summary["accuracy_max"] == max(accuracies)
    assert json.load(open(os.path.join(workdir, "summary.json"))) == summary
    for name, seed in (("seed_5", 5), ("seed_6", 6)):
        run_dir = os.path.join(workdir, name)
        saved = json.load(open(os.path.join(run_dir, "config.json")))
        assert saved["seed"] == seed and saved["parallel_runs"] == 0 and saved["num_classes"] == 10
        assert json.load(open(os.path.join(run_dir, "summary.json"))) == summary["runs"][name]
        assert [r["step"] for r in read_metrics(os.path.join(run_dir, "metrics.jsonl"))
                if "eval/accuracy" in r] == [2, 4]
        assert os.listdir(os.path.join(run_dir, "tensorboard"))
        # each run is an ordinary finished run: loadable (e.g. as a teacher)
        assert load_run(run_dir).step == 4
    with pytest.raises(CheckpointError, match="parallel runs; point at one of its runs"):
        load_run(workdir, role="teacher")


def test_finished_job_reruns_nothing(seed_job):
    workdir, summary = seed_job
    before = read_metrics(os.path.join(workdir, "seed_5", "metrics.jsonl"))
    assert train_and_evaluate(job_config(parallel_runs=2, seed=5), workdir) == summary
    assert read_metrics(os.path.join(workdir, "seed_5", "metrics.jsonl")) == before


def test_resume_after_a_save_interrupted_between_runs(seed_job, tmp_path):
    """Run seed_6 lost its last checkpoint (a kill between the runs' saves): the job goes back to the last
    step both runs have and ends exactly as the uninterrupted job."""
    workdir, summary = seed_job
    copy = str(tmp_path / "copy")
    shutil.copytree(workdir, copy)
    os.remove(os.path.join(copy, "summary.json"))
    checkpointer = Checkpointer(os.path.join(copy, "seed_6"))
    checkpointer.manager.delete(4)
    checkpointer.close()
    resumed = train_and_evaluate(job_config(parallel_runs=2, seed=5), copy)
    assert resumed["steps_this_run"] == 2
    for name in ("seed_5", "seed_6"):
        assert deterministic_records(os.path.join(copy, name)) == deterministic_records(os.path.join(workdir, name))
        assert resumed["runs"][name]["accuracy"] == summary["runs"][name]["accuracy"]


def test_sweep_of_a_loss_weight_equals_single_runs(teacher_dir, tmp_path):
    config = job_config(parallel_runs=2, parallel_sweep="at_beta", parallel_values=(0.0, 1000.0),
                        **{"teacher.workdir": teacher_dir, "num_train_steps": 2})
    summary = train_and_evaluate(config, str(tmp_path / "sweep"))
    assert sorted(summary["runs"]) == ["at_beta_0", "at_beta_1000"]
    assert summary["parallel_sweep"] == "at_beta" and summary["runs"]["at_beta_1000"]["at_beta"] == 1000.0
    saved = json.load(open(tmp_path / "sweep" / "at_beta_1000" / "config.json"))
    assert saved["loss"]["at_beta"] == 1000.0 and saved["seed"] == config.seed
    single = job_config(**{"teacher.workdir": teacher_dir, "num_train_steps": 2, "loss.at_beta": 1000.0})
    train_and_evaluate(single, str(tmp_path / "single"))
    assert_same_run(str(tmp_path / "sweep" / "at_beta_1000"), str(tmp_path / "single"))
    # the beta = 0 run computes the AT term but does not train on it: its loss is plain cross-entropy
    record = read_metrics(str(tmp_path / "sweep" / "at_beta_0" / "metrics.jsonl"))[0]
    assert record["train/at"] > 0 and record["train/total"] == pytest.approx(record["train/ce"])


def test_vmapped_job_equals_unrolled_job(seed_job, tmp_path):
    """parallel_mode "vmap" with 2 steps per compiled call (lax.scan: the accelerator path) against
    "unroll" with one step per call (the CPU default)."""
    workdir, summary = seed_job
    vmapped = train_and_evaluate(job_config(parallel_runs=2, seed=5, parallel_mode="vmap", steps_per_call=2),
                                 str(tmp_path))
    for name in ("seed_5", "seed_6"):
        assert_same_run(str(tmp_path / name), os.path.join(workdir, name))
        assert vmapped["runs"][name]["accuracy"] == summary["runs"][name]["accuracy"]


def test_a_diverging_run_stops_alone(tmp_path):
    workdir = str(tmp_path / "job")
    config = job_config(parallel_runs=2, parallel_sweep="grad_penalty_beta", parallel_values=(0.0, 1e38),
                        log_every_steps=1, checkpoint_every_steps=1)
    summary = train_and_evaluate(config, workdir)
    good, bad = summary["runs"]["grad_penalty_beta_0"], summary["runs"]["grad_penalty_beta_1e+38"]
    assert good["accuracy"] is not None and summary["finished_runs"] == 1
    assert bad["accuracy"] is None and "became" in bad["stopped"]
    bad_dir = os.path.join(workdir, "grad_penalty_beta_1e+38")
    stopped = json.load(open(os.path.join(bad_dir, "stopped.json")))
    assert stopped["step"] >= 1
    checkpointer = Checkpointer(bad_dir, read_only=True)
    assert all(step < stopped["step"] for step in checkpointer.all_steps())
    for step in checkpointer.all_steps():
        state = checkpointer.restore(step)
        assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state["params"]))
    assert Checkpointer(os.path.join(workdir, "grad_penalty_beta_0"), read_only=True).latest_step() == 4


@pytest.mark.parametrize("overrides,message", [
    ({"parallel_runs": -1}, "parallel_runs"),
    ({"parallel_runs": 2, "parallel_mode": "pmap"}, "parallel_mode"),
    ({"parallel_runs": 1, "parallel_sweep": "at_beta"}, ">= 2"),
    ({"parallel_runs": 2, "parallel_values": (1.0, 2.0)}, "parallel_sweep is empty"),
    ({"parallel_runs": 2, "parallel_sweep": "learning_rate", "parallel_values": (1.0, 2.0)}, "sweepable"),
    ({"parallel_runs": 3, "parallel_sweep": "at_beta", "parallel_values": (1.0, 2.0)}, "one value per run"),
    ({"parallel_runs": 2, "parallel_sweep": "at_beta", "parallel_values": (1.0, 1.0)}, "repeated"),
    ({"parallel_runs": 2, "parallel_sweep": "at_beta", "parallel_values": (1.0, -2.0)}, ">= 0"),
    ({"parallel_runs": 2, "parallel_sweep": "kd_alpha", "parallel_values": (0.5, 2.0)}, r"\[0, 1\]"),
    ({"parallel_runs": 2, "parallel_sweep": "kd_temperature", "parallel_values": (1.0, 4.0)}, "kd_alpha > 0"),
])
def test_bad_job_settings_are_config_errors(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train_and_evaluate(job_config(**overrides), str(tmp_path / "job"))
    assert not os.path.exists(tmp_path / "job")


def test_changing_the_job_on_resume_is_refused(seed_job):
    workdir, _ = seed_job
    for overrides in ({"parallel_runs": 3}, {"parallel_runs": 0}):
        with pytest.raises(WorkdirError, match="parallel_runs"):
            train_and_evaluate(job_config(seed=5, **overrides), workdir)
    assert Checkpointer(os.path.join(workdir, "seed_5"), read_only=True).latest_step() == 4


def test_run_specs_and_names():
    config = job_config(parallel_runs=3, seed=2)
    assert [(s.name, s.seed, dict(s.loss_weights)) for s in parallel_runs.run_specs(config)] == [
        ("seed_2", 2, {}), ("seed_3", 3, {}), ("seed_4", 4, {})]
    sweep = job_config(parallel_runs=3, parallel_sweep="loss.at_beta", parallel_values=(0, 0.5, 1e3))
    specs = parallel_runs.run_specs(sweep)
    assert [s.name for s in specs] == ["at_beta_0", "at_beta_0.5", "at_beta_1000"]
    assert {s.seed for s in specs} == {sweep.seed}
    assert parallel_runs.structure_loss_config(sweep.loss, specs).at_beta == 1e3
    np.testing.assert_array_equal(parallel_runs.initial_loss_weights(specs)["at_beta"], [0, 0.5, 1e3])
    assert parallel_runs.run_specs(job_config()) == []
    assert parallel_runs.run_config(sweep, specs[1])["loss"]["at_beta"] == 0.5


def test_cli_job_on_two_devices_equals_one_device(seed_job, tmp_path):
    """Data parallel over a 2-device mesh and vmapped over runs at once: same numbers as one device."""
    workdir, summary = seed_job
    args = ["--config=configs/tiny.py", f"--workdir={tmp_path / 'job'}", "--config.parallel_runs=2",
            "--config.seed=5"] + [f"--config.{key}={value}" for key, value in STEPS.items()]
    result = run_cli(args, devices=2)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "job/seed_5" in result.stdout
    assert "median test accuracy" in result.stdout
    for name in ("seed_5", "seed_6"):
        mine, theirs = deterministic_records(tmp_path / "job" / name), deterministic_records(os.path.join(workdir, name))
        for a, b in zip(mine, theirs):
            for key, value in b.items():
                np.testing.assert_allclose(a[key], value, rtol=2e-4, atol=1e-5, err_msg=key)
    bad = run_cli(["--config=configs/tiny.py", f"--workdir={tmp_path / 'bad'}", "--config.parallel_runs=2",
                   "--config.parallel_sweep=at_beta", "--config.parallel_values=(1.0,)"])
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("at_jax: error:")
    assert "one value per run" in bad.stderr

"""The experiment runner: teacher once, methods x seeds, the results table, resuming without retraining."""
import importlib.util
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from at_jax.experiments import plan as experiments_plan, report as experiment_results
from at_jax.errors import ExperimentError
from at_jax.experiments.run import run_experiment
from experiment_utils import compilation_cache, register_tiny_cnn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def experiment_config(name: str = "smoke", argument: str | None = None):
    """configs/experiments/NAME.py's get_config(argument)."""
    path = os.path.join(REPO, "configs", "experiments", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"experiment_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(argument) if argument is not None else module.get_config()


class CountingTrainer:
    """The real trainer, counting the runs it is asked for."""

    def __init__(self):
        self.runs = []

    def __call__(self, run_config, workdir):
        from at_jax.training import train_and_evaluate  # pylint: disable=import-outside-toplevel
        self.runs.append(os.path.relpath(workdir))
        return train_and_evaluate(run_config, workdir)


def tiny_experiment():
    """configs/experiments/smoke.py (configs/tiny.py data, none/at x 2 seeds, 4 steps) with tiny CNNs."""
    register_tiny_cnn()
    config = experiment_config()
    config.base.model = "tiny-cnn-4"
    config.base.teacher.model = "tiny-cnn-8"
    return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The tiny experiment, trained once for this module."""
    workdir = str(tmp_path_factory.mktemp("experiment"))
    trainer = CountingTrainer()
    with compilation_cache(str(tmp_path_factory.mktemp("jax_cache"))):
        results = run_experiment(tiny_experiment(), workdir, train_fn=trainer)
    return workdir, results, trainer


def test_trains_teacher_then_each_method_and_seed(finished):
    workdir, _, trainer = finished
    expected = ["teacher", "none/seed_0", "none/seed_1", "at/seed_0", "at/seed_1"]
    assert [os.path.relpath(run, os.path.relpath(workdir)) for run in trainer.runs] == expected
    for run in expected:
        with open(os.path.join(workdir, run, "summary.json")) as file:
            assert json.load(file)["step"] == 4
    with open(os.path.join(workdir, "at", "seed_1", "config.json")) as file:
        saved = json.load(file)
    assert saved["seed"] == 1 and saved["loss"]["at_beta"] == 1e3
    assert saved["teacher"]["workdir"] == os.path.join(workdir, "teacher")
    with open(os.path.join(workdir, "none", "seed_0", "config.json")) as file:
        assert json.load(file)["loss"]["at_beta"] == 0.0


def test_results_hold_the_median_over_seeds(finished):
    workdir, results, _ = finished
    with open(os.path.join(workdir, "results.json")) as file:
        assert json.load(file) == json.loads(json.dumps(results))
    markdown = open(os.path.join(workdir, "results.md")).read()
    for method in ("none", "at"):
        errors = []
        for seed in (0, 1):
            with open(os.path.join(workdir, method, f"seed_{seed}", "summary.json")) as file:
                errors.append(100 * (1 - json.load(file)["accuracy"]))
        entry = results["methods"][method]
        assert entry["median"] == pytest.approx(np.median(errors))
        assert (entry["min"], entry["max"]) == pytest.approx((min(errors), max(errors)))
        assert entry["finished_seeds"] == 2
        assert f"{np.median(errors):.2f} ({min(errors):.2f}–{max(errors):.2f})" in markdown
        per_seed = f"| {method} | {errors[0]:.2f} | {errors[1]:.2f} |"
        assert per_seed in markdown
    with open(os.path.join(workdir, "teacher", "summary.json")) as file:
        teacher_error = 100 * (1 - json.load(file)["accuracy"])
    assert results["teacher"]["error"] == pytest.approx(teacher_error)
    table_row = next(line for line in markdown.splitlines() if line.startswith("| at_jax |"))
    assert table_row.endswith(f"| {teacher_error:.2f} |")
    # tiny-cnn-W: conv 3x3x3xW + W, conv 3x3xWx2W + 2W, BN 2x2W, dense 2Wx10 + 10.
    assert results["parameters"] == {"tiny-cnn-4": 514, "tiny-cnn-8": 1594}
    assert "| at_jax | tiny-cnn-4 (514) | tiny-cnn-8 (1.6k) |" in table_row


def test_second_invocation_trains_nothing(finished):
    workdir, results, _ = finished
    summary = os.path.join(workdir, "at", "seed_0", "summary.json")
    before = os.stat(summary).st_mtime_ns
    trainer = CountingTrainer()
    again = run_experiment(tiny_experiment(), workdir, train_fn=trainer)
    assert trainer.runs == []
    assert os.stat(summary).st_mtime_ns == before
    assert again["methods"] == results["methods"]


def test_changed_settings_are_refused_not_overwritten(finished):
    workdir, _, _ = finished
    config = tiny_experiment()
    config.methods.at.at_beta = 10.0
    with pytest.raises(ExperimentError, match=r"at/seed_0 holds a run with other settings \(loss.at_beta"):
        run_experiment(config, workdir, train_fn=lambda *_: pytest.fail("trained"))


def test_parallel_seeds_train_each_method_as_one_job_with_the_same_results(finished, tmp_path):
    """parallel_seeds: teacher, then one vmapped job per method; the same directories, files and numbers."""
    workdir, results, _ = finished
    config = tiny_experiment()
    config.parallel_seeds = True
    config.teacher_workdir = os.path.join(workdir, "teacher")  # the same teacher
    trainer = CountingTrainer()
    parallel_results = run_experiment(config, str(tmp_path), train_fn=trainer)
    assert [os.path.relpath(run, os.path.relpath(str(tmp_path))) for run in trainer.runs] == ["none", "at"]
    for method in ("none", "at"):
        for seed in (0, 1):
            with open(tmp_path / method / f"seed_{seed}" / "config.json") as file:
                saved = json.load(file)
            assert saved["seed"] == seed and saved["parallel_runs"] == 0
        assert parallel_results["methods"][method]["errors"] == pytest.approx(
            results["methods"][method]["errors"], abs=1e-3)
    trainer.runs.clear()
    run_experiment(config, str(tmp_path), train_fn=trainer)
    assert trainer.runs == []


def fake_summary(accuracy, step=4):
    return {"model": "wrn-10-1", "step": step, "accuracy": accuracy}


def test_only_unfinished_runs_are_trained(tmp_path):
    """A run whose summary has fewer steps than planned (or none) goes back to the trainer; others do not."""
    config = experiment_config()
    accuracies = {"teacher": 0.9, "none/seed_0": 0.5, "none/seed_1": 0.6, "at/seed_0": 0.7, "at/seed_1": 0.8}
    calls = []

    def train(run_config, workdir):
        name = os.path.relpath(workdir, tmp_path)
        calls.append(name)
        os.makedirs(workdir, exist_ok=True)
        summary = fake_summary(accuracies[name])
        with open(os.path.join(workdir, "summary.json"), "w") as file:
            json.dump(summary, file)
        return summary

    run_experiment(config, str(tmp_path), train_fn=train)
    assert len(calls) == 5
    with open(tmp_path / "at" / "seed_1" / "summary.json", "w") as file:
        json.dump(fake_summary(0.8, step=2), file)       # stopped half-way
    os.remove(tmp_path / "none" / "seed_0" / "summary.json")
    calls.clear()
    results = run_experiment(config, str(tmp_path), train_fn=train)
    assert calls == ["none/seed_0", "at/seed_1"]
    assert results["methods"]["none"]["median"] == pytest.approx(45.0)   # errors 50 and 40
    assert results["methods"]["at"]["errors"] == pytest.approx({"0": 30.0, "1": 20.0})
    assert results["teacher"]["error"] == pytest.approx(10.0)


def test_statistics_and_cells():
    assert experiment_results.error_statistics([9.0, 7.0, 8.0, 10.0]) == {"median": 8.5, "min": 7.0, "max": 10.0}
    assert experiment_results.error_statistics([3.0, 1.0, 2.0])["median"] == 2.0
    cell = {"median": 8.5, "min": 7.0, "max": 10.0, "finished_seeds": 4, "planned_seeds": 5}
    assert experiment_results.format_cell(cell) == "8.50 (7.00–10.00) [4/5 seeds]"
    assert experiment_results.format_cell({**cell, "median": None}) == "–"


def test_paired_differences_subtract_the_first_method_seed_by_seed():
    methods = {"none": {"errors": {"0": 20.0, "1": 22.0, "2": 18.0}},
               "at": {"errors": {"0": 18.5, "1": 22.5, "2": 15.0}},
               "kd": {"errors": {"0": 19.0, "2": 19.0}}}   # seed 1 not finished
    results = {"methods": methods, "seeds": [0, 1, 2]}
    differences = experiment_results.paired_differences(results)
    assert differences == {"at": {"0": -1.5, "1": 0.5, "2": -3.0}, "kd": {"0": -1.0, "2": 1.0}}
    lines = experiment_results.paired_lines(results)
    assert "| at | -1.50 | +0.50 | -3.00 | -1.50 | 2/3 |" in lines
    assert "| kd | -1.00 | – | +1.00 | +0.00 | 1/2 |" in lines
    assert experiment_results.paired_lines({"methods": {"none": methods["none"]}, "seeds": [0]}) == []


def test_paper_numbers_only_where_the_setting_matches():
    config = experiment_config("table1_wrn_16_2_to_16_1")
    base = config.base.to_dict()
    setting = config.paper_reference.setting.to_dict()
    assert experiment_results.setting_differences(base, setting) == []
    config.base.num_train_steps = 100
    differences = experiment_results.setting_differences(config.base.to_dict(), setting)
    assert differences == ["num_train_steps 100 here, -1 in the paper"]
    kwargs = dict(name="t", description="", teacher_model="wrn-16-2", teacher_workdir="t",
                  teacher_summary={"accuracy": 0.9369}, methods=["none", "at"], seeds=[0],
                  student_summaries={"none": {0: {"accuracy": 0.9}}, "at": {0: {"accuracy": 0.92}}},
                  parameter_counts={}, labels={}, paper_errors=config.paper_reference.errors.to_dict(),
                  paper_setting=setting)
    matched = experiment_results.format_markdown(experiment_results.build_results(base=base, **kwargs))
    assert "| paper |  |  | 8.77 | 7.93 | 6.31 |" in matched
    assert "| at_jax | wrn-16-1 | wrn-16-2 | 10.00 | 8.00 | 6.31 |" in matched
    shortened = experiment_results.format_markdown(
        experiment_results.build_results(base=config.base.to_dict(), **kwargs))
    assert "| paper |" not in shortened and "num_train_steps 100 here" in shortened


def test_method_overrides_start_from_no_transfer():
    config = experiment_config("digits")
    assert config.base.loss.at_beta == 10.0         # the default config turns AT on
    runs = {run.name: run for run in experiments_plan.plan(config, "/tmp/unused")}
    assert runs["none/seed_3"].config.loss.at_beta == 0.0 and runs["none/seed_3"].config.seed == 3
    assert runs["kd/seed_0"].config.loss.kd_alpha == 0.9 and runs["kd/seed_0"].config.loss.at_beta == 0.0
    assert runs["teacher"].config.model == "wrn-10-2" and runs["teacher"].config.loss.at_beta == 0.0
    assert runs["at/seed_2"].config.loss.at_beta == 10.0
    assert len(runs) == 1 + 4 * 5
    gradient = {run.name: run for run in experiments_plan.plan(experiment_config("table3_gradient"), "/x")}
    assert gradient["teacher"].config.model_kwargs.to_dict() == {}
    assert gradient["min_l2/seed_0"].config.loss.grad_penalty_beta == 1e3
    assert gradient["min_l2/seed_0"].config.model_kwargs.relu_before_pool is False
    mapping = {run.name: run for run in experiments_plan.plan(experiment_config("table2_mapping"), "/x")}
    assert mapping["f_max^2/seed_0"].config.loss.at_reduce == "max"
    assert mapping["f_sum^4/seed_0"].config.loss.at_p == 4.0


def test_bad_method_names_and_keys_are_user_errors():
    config = experiment_config()
    config.method_order = "none,bogus"
    with pytest.raises(ExperimentError, match="unknown method 'bogus'"):
        experiments_plan.plan(config, "/x")
    config = experiment_config()
    config.methods.at.at_betta = 1.0
    with pytest.raises(ExperimentError, match="methods.at: unknown key 'at_betta'"):
        experiments_plan.plan(config, "/x")


def test_cli_user_error_is_one_line_exit_2(tmp_path):
    command = [sys.executable, "-m", "at_jax.experiment", "--config=configs/experiments/smoke.py",
               f"--workdir={tmp_path}", "--config.method_order=none,bogus"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2
    assert re.fullmatch(r"at_jax: error: unknown method 'bogus' in method_order; valid: .*\n", result.stderr)
    assert os.listdir(tmp_path) == []


def test_cluttered_mnist_experiment_teacher_trains_longer_and_students_see_the_test_digits():
    runs = {run.name: run for run in experiments_plan.plan(experiment_config("cluttered_mnist"), "/x")}
    teacher, student = runs["teacher"].config, runs["at/seed_4"].config
    assert teacher.model == "wrn-10-2" and teacher.num_epochs == 12 and student.num_epochs == 6
    assert student.model == "wrn-10-1" and student.dataset.eval_split == "test"
    assert teacher.dataset.eval_split == "test" and runs["none/seed_0"].config.loss.at_beta == 0.0
    assert len(runs) == 1 + 4 * 5


def test_extended_experiments_sweep_the_at_weight_on_validation_then_run_four_methods_on_test():
    """configs/experiments/cnn_and_vit.py and low_resolution.py: the protocol of _embedded_protocol.py."""
    sweep = {run.name: run for run in experiments_plan.plan(
        experiment_config("low_resolution", "teacher_size=40,split=val"), "/x")}
    assert len(sweep) == 1 + 5 * 3 and sweep["none/seed_2"].config.dataset.eval_split == "val"
    assert [sweep[f"at_{beta}/seed_0"].config.loss.at_beta for beta in (30, 100, 300, 1000)] == [30, 100, 300, 1000]
    assert sweep["teacher"].config.dataset.image_size == 40 and sweep["teacher"].config.teacher.image_size == 0
    student = sweep["at_300/seed_0"].config
    assert student.dataset.image_size == 20 and student.teacher.image_size == 40

    for direction, student_model, teacher_model in (("cnn_to_vit", "vit-ti/8", "wrn-10-2"),
                                                     ("vit_to_cnn", "wrn-10-1", "vit-ti/5")):
        runs = {run.name: run for run in experiments_plan.plan(
            experiment_config("cnn_and_vit", f"direction={direction},split=test"), "/x")}
        assert len(runs) == 1 + 4 * 5 and runs["kd/seed_4"].config.dataset.eval_split == "test"
        teacher, student = runs["teacher"].config, runs["at+kd/seed_0"].config
        assert (student.model, teacher.model) == (student_model, teacher_model)
        vit = student if direction == "cnn_to_vit" else teacher
        assert vit.optimizer.name == "adamw" and dict(vit.model_kwargs)["embed_dim"] == 64
        cnn = teacher if direction == "cnn_to_vit" else student
        assert cnn.optimizer.name == "sgd" and student.loss.kd_alpha == 0.9 and student.loss.at_beta > 0
    with pytest.raises(ValueError, match="teacher_size"):
        experiment_config("low_resolution", "teacher_size=30")


def test_table5_imagenet_experiment_carries_the_paper_numbers_and_the_last_two_groups():
    config = experiment_config("table5_imagenet")
    assert dict(config.paper_reference.errors) == {"none": 30.4, "at": 29.3, "teacher": 26.1}
    runs = {run.name: run for run in experiments_plan.plan(config, "/x")}
    assert sorted(runs) == ["at/seed_0", "none/seed_0", "teacher"]
    at = runs["at/seed_0"].config
    assert at.loss.at_beta == 1e3 and tuple(map(tuple, at.loss.at_pairs)) == ((2, 2), (3, 3))
    assert at.dataset.pipeline == "stream" and at.model == "resnet18" and runs["teacher"].config.model == "resnet34"

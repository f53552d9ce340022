"""The loss-term registry: terms declared once, everything derived from it, user terms from a config file."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import at_jax
from at_jax import losses
from at_jax.errors import ConfigError
from at_jax.experiments import report
from at_jax.experiments.plan import without_transfer_terms
from at_jax.run_files import read_metrics
from at_jax.training import train_and_evaluate
from trainer_utils import REPO, deterministic_records, tiny_config

STUDENT = (jnp.ones((2, 4, 4, 3)), jnp.arange(2 * 2 * 2 * 5, dtype=jnp.float32).reshape(2, 2, 2, 5))
TEACHER = (jnp.zeros((2, 4, 4, 6)), jnp.full((2, 2, 2, 7), 0.5))
LOGITS = jnp.array([[1.0, 2.0, 0.5], [0.1, -1.0, 3.0]])
LABELS = jnp.array([1, 2])


def test_builtin_terms_are_declared_once_and_everything_derives_from_them():
    names = [term.name for term in losses.registered_terms()][:6]
    assert names == ["at", "kd", "factt", "grad_at", "grad_penalty", "flip_symmetry"]
    keys = losses.weight_keys()
    assert keys[:6] == ("at_beta", "kd_alpha", "factt_beta", "grad_at_beta", "grad_penalty_beta",
                        "flip_symmetry_beta")
    assert set(keys) | {"kd_temperature"} == set(losses.sweepable_keys())
    assert losses.method_name({"at_beta": 1e3, "kd_alpha": 0.9}) == "at+kd"
    assert losses.method_name({"grad_penalty_beta": 1.0}) == "min_l2"
    assert losses.method_name({"at_beta": 0.0}) == "none"
    assert losses.needs_teacher({"grad_at_beta": 1.0}) and not losses.needs_teacher({"flip_symmetry_beta": 1.0})
    assert losses.method_label("at+kd") == "AT+KD" and losses.method_label("none") == "student"
    # experiments, result tables and the teacher-then-students pipeline use the same table
    loss = tiny_config(**{"loss.at_beta": 5.0, "loss.grad_at_beta": 2.0}).loss
    assert all(value == 0.0 for key, value in without_transfer_terms(loss).items() if key in keys)


def test_a_user_term_enters_the_objective_logs_and_is_weighted():
    def spread(student, teacher, labels):
        assert teacher is None  # not asked for
        return jnp.mean(jnp.square(student.features[-1])) + 0.0 * labels.sum()

    losses.register_term("test_spread", spread)
    try:
        objective = losses.build_objective({"test_spread_beta": 0.25})
        assert objective.term_names == ("test_spread",) and not objective.uses_teacher
        total, terms = jax.jit(lambda: objective({}, LOGITS, STUDENT, None, None, LABELS, 0.0))()
        expected = float(jnp.mean(jnp.square(STUDENT[-1])))
        assert float(terms["test_spread"]) == pytest.approx(expected)
        assert float(total) == pytest.approx(float(terms["ce"]) + 0.25 * expected, rel=1e-6)
        assert losses.method_name({"test_spread_beta": 1.0}) == "test_spread"
        assert "test_spread_beta" in losses.sweepable_keys()
        # a swept weight is a runtime scalar: one objective, any weight
        total_two, _ = objective({}, LOGITS, STUDENT, None, None, LABELS, 0.0, {"test_spread_beta": 2.0})
        assert float(total_two) == pytest.approx(float(terms["ce"]) + 2.0 * expected, rel=1e-6)
    finally:
        losses.terms._REGISTRY.pop("test_spread", None)  # pylint: disable=protected-access


def test_a_user_term_with_the_teacher_gets_it_without_gradient():
    def match_logits(student, teacher, labels):
        return jnp.mean(jnp.square(student.logits - teacher.logits))

    losses.register_term("test_match", match_logits, needs_teacher=True)
    try:
        objective = losses.build_objective({"test_match_beta": 1.0})
        assert objective.uses_teacher and losses.needs_teacher({"test_match_beta": 1.0})
        teacher_logits = LOGITS[::-1]
        grads = jax.grad(lambda s, t: objective({}, s, STUDENT, t, TEACHER, LABELS, 0.0)[0], argnums=(0, 1))(
            LOGITS, teacher_logits)
        assert float(jnp.abs(grads[0]).sum()) > 0 and float(jnp.abs(grads[1]).sum()) == 0.0
    finally:
        losses.terms._REGISTRY.pop("test_match", None)  # pylint: disable=protected-access


@pytest.mark.parametrize("name,message", [("at", "taken"), ("total", "taken"), ("Bad-Name", "lower-case"),
                                          ("", "lower-case")])
def test_bad_term_names_are_refused(name, message):
    with pytest.raises(ConfigError, match=message):
        losses.register_term(name, lambda student, teacher, labels: 0.0)


def test_a_term_must_return_a_scalar():
    losses.register_term("test_vector", lambda student, teacher, labels: student.logits[:, 0])
    try:
        objective = losses.build_objective({"test_vector_beta": 1.0})
        with pytest.raises(ConfigError, match="scalar"):
            objective({}, LOGITS, STUDENT, None, None, LABELS, 0.0)
    finally:
        losses.terms._REGISTRY.pop("test_vector", None)  # pylint: disable=protected-access


def test_kd_mixes_with_cross_entropy_and_at_follows_the_schedule():
    objective = losses.build_objective({"kd_alpha": 0.75, "at_beta": 10.0, "beta_schedule": "linear"})
    total, terms = objective({}, LOGITS, STUDENT, LOGITS[::-1], TEACHER, LABELS, 0.5)
    assert float(terms["task"]) == pytest.approx(0.75 * float(terms["kd"]) + 0.25 * float(terms["ce"]), rel=1e-6)
    assert float(total) == pytest.approx(float(terms["task"]) + 0.5 * 10.0 * float(terms["at"]), rel=1e-6)
    assert report.build_results(
        name="x", description="", base={}, teacher_model="t", teacher_workdir="", teacher_summary=None,
        methods=["at+kd"], seeds=[0], student_summaries={}, parameter_counts={}, labels={}, paper_errors={},
        paper_setting={})["methods"]["at+kd"]["label"] == "AT+KD"


USER_CONFIG = '''"""A user's config outside the repository: registers a term and sets its weight."""
import jax.numpy as jnp

import at_jax
from at_jax.default_config import get_config as base_config, set_dataset


def feature_energy(student, teacher, labels):
    return jnp.mean(jnp.square(student.features[-1]))


def get_config():
    at_jax.losses.register_term("feature_energy", feature_energy)
    config = base_config()
    config.pipeline = ""
    set_dataset(config, "synthetic")
    config.dataset.num_train = 32
    config.dataset.num_test = 16
    config.dataset.image_size = 16
    config.batch_size = 16
    config.num_train_steps = 2
    config.log_every_steps = 1
    config.eval_every_steps = 0
    config.eval_batch_size = 16
    config.checkpoint_every_steps = 2
    config.loss.at_beta = 0.0
    config.loss.feature_energy_beta = 0.5
    config.progress = False
    config.metrics.writers = "jsonl"
    return config
'''


def _train(args, cwd):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "at_jax.train", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


@pytest.mark.slow
def test_user_term_from_a_config_file_outside_the_repository_trains_logs_and_sweeps(tmp_path):
    config_file = tmp_path / "elsewhere" / "my_config.py"
    config_file.parent.mkdir()
    config_file.write_text(USER_CONFIG)
    single = _train([f"--config={config_file}", f"--workdir={tmp_path / 'single'}"], cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    records = read_metrics(str(tmp_path / "single" / "metrics.jsonl"))
    first = records[0]
    assert first["train/feature_energy"] > 0
    assert first["train/total"] == pytest.approx(first["train/task"] + 0.5 * first["train/feature_energy"], rel=1e-5)
    saved = json.load(open(tmp_path / "single" / "config.json"))
    assert saved["loss"]["feature_energy_beta"] == 0.5

    sweep = _train([f"--config={config_file}", f"--workdir={tmp_path / 'sweep'}", "--config.parallel_runs=2",
                    "--config.parallel_sweep=feature_energy_beta", "--config.parallel_values=(0.0,0.5)"],
                   cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert sorted(os.listdir(tmp_path / "sweep")) == ["config.json", "feature_energy_beta_0",
                                                      "feature_energy_beta_0.5", "summary.json"]
    swept = deterministic_records(tmp_path / "sweep" / "feature_energy_beta_0.5")
    for mine, theirs in zip(swept, deterministic_records(tmp_path / "single")):
        for key, value in theirs.items():
            np.testing.assert_allclose(mine[key], value, rtol=2e-5, atol=1e-6, err_msg=key)
    off = read_metrics(str(tmp_path / "sweep" / "feature_energy_beta_0" / "metrics.jsonl"))[0]
    assert off["train/feature_energy"] > 0 and off["train/total"] == pytest.approx(off["train/ce"])


def test_user_term_with_the_session_teacher(teacher_dir, tmp_path):
    """A teacher-using user term in a run, in process: the teacher is loaded, the term logged."""
    losses.register_term("test_logit_match", lambda s, t, y: jnp.mean(jnp.square(s.logits - t.logits)),
                         needs_teacher=True)
    try:
        config = tiny_config(**{"loss.at_beta": 0.0, "teacher.workdir": teacher_dir, "num_train_steps": 2})
        config.loss.test_logit_match_beta = 0.1
        summary = train_and_evaluate(config, str(tmp_path / "run"))
        assert summary["teacher"] == "wrn-10-1"
        record = read_metrics(str(tmp_path / "run" / "metrics.jsonl"))[0]
        assert record["train/test_logit_match"] > 0
        assert record["train/total"] == pytest.approx(record["train/ce"] + 0.1 * record["train/test_logit_match"],
                                                      rel=1e-5)
    finally:
        losses.terms._REGISTRY.pop("test_logit_match", None)  # pylint: disable=protected-access


def test_register_term_is_public():
    assert at_jax.register_term is losses.register_term is at_jax.losses.register_term


def test_an_experiment_method_can_turn_on_a_user_term():
    from at_jax.experiments.plan import make_experiment_config, plan  # pylint: disable=import-outside-toplevel

    losses.register_term("test_planned", lambda student, teacher, labels: jnp.mean(student.logits))
    try:
        config = make_experiment_config(tiny_config(), name="x", seeds=1,
                                        methods={"none": {}, "test_planned": {"test_planned_beta": 0.5}})
        runs = {run.name: run for run in plan(config, "/unused")}
        assert runs["test_planned/seed_0"].config.loss.test_planned_beta == 0.5
        assert runs["none/seed_0"].config.loss.test_planned_beta == 0.0
        assert runs["teacher"].config.loss.test_planned_beta == 0.0
        assert losses.method_name(runs["test_planned/seed_0"].config.loss) == "test_planned"
    finally:
        losses.terms._REGISTRY.pop("test_planned", None)  # pylint: disable=protected-access

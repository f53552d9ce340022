"""The recipe keys inside the compiled step and in whole runs: the teacher sees the student's mixed image, the
hard-label loss uses the mixed labels, EMA by hand, the averaged weights as the final model, multi-run and
streamed jobs, and one config with every new key through the CLI and through ``at_jax.train``."""
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import at_jax
from at_jax.data.mix import mix_batch
from at_jax.losses import build_objective, cross_entropy, soft_targets
from at_jax.training.optimizer import make_optimizer
from at_jax.training.state import create_train_state
from at_jax.training.step import StepConfig, make_train_step
from image_data import write_image_folder
from trainer_utils import REPO, run_cli, tiny_config

NUM_CLASSES = 3


class InputFeatures(nn.Module):
    """Logits from a dense layer; its one feature is the input itself, so F-ActT between two such models is
    zero exactly when both saw the same image."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(NUM_CLASSES)(x.reshape(x.shape[0], -1)), (x,)


def _step_and_state(ema_decay=0.0, **step_options):
    model = InputFeatures()
    sample = jnp.zeros((1, 8, 8, 3))
    teacher_variables = model.init(jax.random.PRNGKey(7), sample)
    objective = build_objective({"factt_beta": 1.0, "label_smoothing": step_options.pop("label_smoothing", 0.0)})
    transform, schedule = make_optimizer({"learning_rate": 0.5, "momentum": 0.0, "weight_decay": 0.0}, 10)
    step_config = StepConfig(total_steps=10, pad=0, flip=False, mean=(0.0,) * 3, std=(1.0,) * 3,
                             num_classes=NUM_CLASSES, ema_decay=ema_decay, **step_options)
    step = jax.jit(make_train_step(model, model, objective, transform, schedule, step_config))
    state = create_train_state(model, transform, sample, 0, objective=objective, teacher_model=model,
                               teacher_variables=teacher_variables, ema=ema_decay > 0)
    rng = np.random.default_rng(0)
    data = {"train_images": jnp.asarray(rng.integers(0, 256, (6, 8, 8, 3)), jnp.uint8),
            "train_labels": jnp.asarray([0, 1, 2, 0, 1, 2], jnp.int32)}
    return step, state, teacher_variables, data, model


@pytest.mark.parametrize("options", [{"mixup_alpha": 0.5}, {"cutmix_alpha": 1.0},
                                     {"mixup_alpha": 0.5, "cutmix_alpha": 1.0}])
def test_teacher_sees_the_students_mixed_image_and_ce_uses_mixed_labels(options):
    step, state, teacher_variables, data, model = _step_and_state(label_smoothing=0.1, **options)
    inputs = jnp.arange(4)
    _, metrics = step(state, teacher_variables, data, inputs)
    assert float(metrics["factt"]) == 0.0     # the teacher's only feature is its input: the very same image
    # The hand computation of the hard-label loss on the step's own (seed, step) key.
    step_key = jax.random.fold_in(state["rng"], state["step"])
    x = data["train_images"][:4].astype(jnp.float32) / 255.0
    mixed, targets = mix_batch(jax.random.fold_in(step_key, 2), x, soft_targets(data["train_labels"][:4], 3, 0.1),
                               **options)
    assert not np.allclose(np.asarray(mixed), np.asarray(x))        # mixing happened
    logits, _ = model.apply({"params": state["params"]["model"]}, mixed)
    assert float(metrics["ce"]) == pytest.approx(float(cross_entropy(logits, targets)), rel=1e-6)
    unmixed_logits, _ = model.apply({"params": state["params"]["model"]}, x)
    assert float(metrics["ce"]) != pytest.approx(float(cross_entropy(unmixed_logits, data["train_labels"][:4])))


def test_ema_follows_the_hand_recurrence():
    decay = 0.6
    step, state, teacher_variables, data, _ = _step_and_state(ema_decay=decay)
    average = state["params"]["model"]
    for index in range(3):
        state, _ = step(state, teacher_variables, data, jnp.arange(4) + index)
        average = jax.tree.map(lambda a, p: decay * a + (1 - decay) * p, average, state["params"]["model"])
    jax.tree.map(lambda got, want: np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-8),
                 state["ema"]["params"], average)
    assert not np.allclose(state["ema"]["params"]["Dense_0"]["kernel"], state["params"]["model"]["Dense_0"]["kernel"])


def test_ema_as_the_final_model_and_its_batch_norm_statistics(tmp_path):
    from at_jax.training import train_and_evaluate  # pylint: disable=import-outside-toplevel
    from at_jax.training.checkpoint import Checkpointer  # pylint: disable=import-outside-toplevel

    config = tiny_config(**{"ema.decay": 0.5, "ema.use_for_final": True, "metrics.writers": "jsonl"})
    summary = train_and_evaluate(config, str(tmp_path))
    assert summary["accuracy"] == summary["ema_accuracy"] and "raw_accuracy" in summary
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert any("eval/ema_accuracy" in record for record in records)
    checkpointer = Checkpointer(str(tmp_path), read_only=True)
    saved = checkpointer.restore(checkpointer.latest_step())
    checkpointer.close()
    _, variables = at_jax.load_model(str(tmp_path))
    jax.tree.map(np.testing.assert_array_equal, variables["params"], saved["ema"]["params"])
    jax.tree.map(np.testing.assert_array_equal, variables["batch_stats"], saved["ema"]["batch_stats"])
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(saved["ema"]["batch_stats"]),
                                                         jax.tree.leaves(saved["batch_stats"])))


def test_ema_use_for_final_needs_a_decay(tmp_path):
    result = run_cli(["--config=configs/tiny.py", f"--workdir={tmp_path / 'run'}", "--config.ema.use_for_final=True"])
    assert result.returncode == 2 and "ema.use_for_final needs ema.decay" in result.stderr
    assert not (tmp_path / "run" / "config.json").exists()


def test_mixup_and_ema_in_a_multi_run_job(tmp_path):
    from at_jax.training import train_and_evaluate  # pylint: disable=import-outside-toplevel

    config = tiny_config(**{"parallel_runs": 2, "augment.mixup_alpha": 0.2, "augment.cutmix_alpha": 1.0,
                            "ema.decay": 0.9, "metrics.writers": "jsonl", "num_train_steps": 4})
    summary = train_and_evaluate(config, str(tmp_path))
    runs = list(summary["runs"].values())
    assert len(runs) == 2 and all(run["ema_accuracy"] is not None for run in runs)
    losses = [[json.loads(line).get("train/ce") for line in open(tmp_path / name / "metrics.jsonl")]
              for name in summary["runs"]]
    assert losses[0] != losses[1]   # each run mixes with its own key


ALL_KEYS = {"optimizer.name": "adamw", "optimizer.learning_rate": 0.003, "optimizer.weight_decay": 0.05,
            "optimizer.b1": 0.9, "optimizer.b2": 0.98, "optimizer.eps": 1e-7, "optimizer.decay_norm_and_bias": False,
            "optimizer.clip_norm": 1.0, "optimizer.schedule": "cosine", "optimizer.warmup_steps": 2,
            "optimizer.end_fraction": 0.01, "loss.label_smoothing": 0.1, "augment.mixup_alpha": 0.2,
            "augment.cutmix_alpha": 1.0, "ema.decay": 0.9, "ema.use_for_final": True,
            "metrics.writers": "jsonl,tensorboard", "loss.at_beta": 100.0, "loss.kd_alpha": 0.5}


def test_every_new_key_through_the_cli_and_the_notebook_api(tmp_path, teacher_dir):
    keys = dict(ALL_KEYS, **{"teacher.workdir": teacher_dir})   # the session's configs/tiny.py teacher
    result = run_cli(["--config=configs/tiny.py", f"--workdir={tmp_path / 'cli'}",
                      *[f"--config.{key}={value}" for key, value in keys.items()]])
    assert result.returncode == 0, result.stderr[-2000:]
    config = at_jax.get_config(os.path.join(REPO, "configs", "tiny.py"))
    for key, value in keys.items():
        section, name = key.split(".")
        config[section][name] = value
    summary = at_jax.train(config, str(tmp_path / "notebook"))
    cli_summary = json.load(open(tmp_path / "cli" / "summary.json"))
    assert summary["accuracy"] == pytest.approx(cli_summary["accuracy"]) and summary["ema_accuracy"] is not None
    assert at_jax.train(config, str(tmp_path / "notebook"))["step"] == summary["step"]   # finished: resumes as done
    rates = [record["train/learning_rate"] for record in map(json.loads, open(tmp_path / "notebook" / "metrics.jsonl"))
             if "train/learning_rate" in record]
    assert len(rates) == 4 and rates[0] < rates[1]            # warmup, then the cosine decay
    with pytest.raises(AttributeError):
        config.optimizer.learning_rte = 0.1                    # locked: a misspelt key is refused


def test_notebook_api_returns_the_pipelines_summaries(tmp_path):
    config = at_jax.get_config(os.path.join(REPO, "configs", "tiny.py"))
    config.pipeline, config.loss.at_beta, config.metrics.writers = "teacher_then_students", 100.0, "jsonl"
    summaries = at_jax.train(config, str(tmp_path))
    assert sorted(summaries) == ["student", "student_at", "teacher"]
    import at_jax.train as entry_point  # pylint: disable=import-outside-toplevel
    assert at_jax.train is entry_point and callable(entry_point)   # the module calls the same function
    assert entry_point(config, str(tmp_path))["student_at"]["step"] == summaries["student_at"]["step"]


def test_package_ships_py_typed():
    assert os.path.isfile(os.path.join(os.path.dirname(at_jax.__file__), "py.typed"))


def test_mixup_and_ema_on_the_streaming_path(tmp_path):
    data_dir = write_image_folder(tmp_path / "folder", classes=("a", "b", "c"), train_per_class=4, val_per_class=2)
    result = run_cli(["--config=configs/imagenet.py", "--config.model=wrn-10-1", f"--config.dataset.data_dir={data_dir}",
                      "--config.dataset.image_size=16", "--config.batch_size=4", "--config.num_train_steps=2",
                      "--config.log_every_steps=1", "--config.eval_batch_size=4", "--config.progress=False",
                      "--config.metrics.writers=jsonl", "--config.compute_dtype=float32", "--config.dataset.workers=0",
                      "--config.augment.mixup_alpha=0.2", "--config.ema.decay=0.5", "--config.loss.label_smoothing=0.1",
                      f"--workdir={tmp_path / 'run'}", "--config.pipeline="])
    assert result.returncode == 0, result.stderr[-2000:]
    saved = json.load(open(tmp_path / "run" / "config.json"))
    assert saved["dataset"]["pipeline"] == "stream"
    assert json.load(open(tmp_path / "run" / "summary.json"))["ema_accuracy"] is not None

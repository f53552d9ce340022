"""The README's Python example runs; its two Quick-start commands are the ones CI and users run."""
import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(REPO, "README.md")).read()


def test_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks, "README has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # pylint: disable=exec-used
    assert namespace["q"].shape == (8, 256)
    assert float(namespace["loss"]) > 0
    assert len(namespace["features"]) == 3 and namespace["logits"].shape == (2, 10)


def test_quick_start_has_exactly_two_commands_and_ci_runs_the_test_one():
    quick_start = README.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", quick_start, flags=re.S).group(1)
    commands = [line for line in block.splitlines() if line.strip()]
    assert len(commands) == 2
    assert "python -m at_jax.train" in commands[0]
    test_command = commands[1].split("&&")[-1].strip()
    assert test_command.startswith("python -m pytest")
    ci_script = open(os.path.join(REPO, ".ci", "run")).read()
    assert test_command in ci_script


def test_user_term_example_trains_and_logs(tmp_path, run_main):
    """The README's "Your own loss terms" config, as written, through the CLI (a few steps per run)."""
    from at_jax import losses  # pylint: disable=import-outside-toplevel
    from at_jax.run_files import read_metrics  # pylint: disable=import-outside-toplevel

    block = next(b for b in re.findall(r"```python\n(.*?)```", README, flags=re.S) if "register_term" in b)
    config_file = tmp_path / "my_config.py"
    config_file.write_text(block)
    try:
        run_main([f"--config={config_file}", f"--workdir={tmp_path / 'runs'}", "--config.num_train_steps=2",
                  "--config.log_every_steps=1", "--config.checkpoint_every_steps=2", "--config.progress=False",
                  "--config.metrics.writers=jsonl"])
    finally:
        losses.terms._REGISTRY.pop("logit_match", None)  # pylint: disable=protected-access
    assert sorted(os.listdir(tmp_path / "runs")) == ["student", "student_logit_match", "teacher"]
    record = read_metrics(str(tmp_path / "runs" / "student_logit_match" / "metrics.jsonl"))[0]
    assert record["train/logit_match"] > 0
    assert abs(record["train/total"] - (record["train/task"] + 0.1 * record["train/logit_match"])) < 1e-4


def test_user_network_example_trains_with_at_on_named_layers(tmp_path, run_main):
    """The README's "Your own network" config, as written, through the CLI (two steps per run)."""
    from at_jax.run_files import read_metrics  # pylint: disable=import-outside-toplevel

    block = next(b for b in re.findall(r"```python\n(.*?)```", README, flags=re.S) if "models.register" in b)
    config_file = tmp_path / "my_net.py"
    config_file.write_text(block)
    run_main([f"--config={config_file}", f"--workdir={tmp_path / 'runs'}", "--config.num_train_steps=2",
              "--config.log_every_steps=1", "--config.checkpoint_every_steps=2", "--config.progress=False",
              "--config.metrics.writers=jsonl", "--config.dataset.canvas_size=28"])
    assert sorted(os.listdir(tmp_path / "runs")) == ["student", "student_at", "teacher"]
    record = read_metrics(str(tmp_path / "runs" / "student_at" / "metrics.jsonl"))[0]
    assert record["train/at/0"] > 0 and record["train/at/1"] > 0

"""The persistent compilation cache: where "auto" points, and that a repeated run reuses compiled programs."""
import os
import subprocess
import sys

from at_jax.training.compilation_cache import cache_directory
from trainer_utils import REPO, TINY_CONFIG


def test_cache_directory_settings(monkeypatch, tmp_path):
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_directory("auto") == os.path.join(str(tmp_path), "at_jax", "jax_compilation_cache")
    assert cache_directory("") is None and cache_directory("gs://b/cache") == "gs://b/cache"
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/elsewhere")
    assert cache_directory("auto") == "/elsewhere"


def test_a_repeated_run_fills_then_uses_the_cache(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "JAX_COMPILATION_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache_home")
    cache = tmp_path / "cache_home" / "at_jax" / "jax_compilation_cache"
    command = [sys.executable, "-m", "at_jax.train", f"--config={TINY_CONFIG}", "--config.num_train_steps=2",
               "--config.log_every_steps=2", "--config.checkpoint_every_steps=2", "--verbosity=1"]
    first = subprocess.run([*command, f"--workdir={tmp_path / 'a'}"], env=env, cwd=REPO, capture_output=True,
                           text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    entries = set(os.listdir(cache))
    assert entries  # the compiled train and eval steps were stored
    second = subprocess.run([*command, f"--workdir={tmp_path / 'b'}"], env=env, cwd=REPO, capture_output=True,
                            text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "Persistent compilation cache hit" in second.stderr and set(os.listdir(cache)) == entries

"""The launch scripts: arguments reach every process exactly as typed, logs per worker, setup step; a fake
``gcloud`` and a fake ``python`` stand in for the cloud and the trainer (no network)."""
import json
import os
import stat
import subprocess
import sys

import pytest

from trainer_utils import REPO

TRICKY = ["--config=configs/cifar100.py", "--workdir=gs://bucket/run", "--config.parallel_values=(10.,100.)",
          "--config.run_name=a b$c'd\"e", "--config.dataset.data_dir=~/data;rm -rf x"]


def _executable(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def fakes(tmp_path):
    """bin/ with a ``python`` that records its arguments and a ``gcloud`` that records its own and runs an
    ssh --command locally with bash (as the workers' shell would)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _executable(bin_dir / "python", '#!/usr/bin/env bash\n'
                'printf "%s\\n" "$@" > "$RECORD_DIR/python_args.$(basename "$PWD")"\necho trained\n')
    _executable(bin_dir / "pip", '#!/usr/bin/env bash\necho "$@" >> "$RECORD_DIR/pip_calls"\n')
    # this interpreter, not `env python3`: a pyenv shim would put its own python ahead of the fake one
    _executable(bin_dir / "gcloud", f'''#!{sys.executable}
import json, os, subprocess, sys
with open(os.path.join(os.environ["RECORD_DIR"], "gcloud_calls"), "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
command = [a[len("--command="):] for a in sys.argv if a.startswith("--command=")]
if command:
    sys.exit(subprocess.call(["bash", "-c", command[0]], cwd=os.environ["HOME"]))
''')
    home = tmp_path / "home"
    (home / "at_jax").mkdir(parents=True)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", HOME=str(home),
               RECORD_DIR=str(tmp_path), TPU="pod", ZONE="zone-a")
    return tmp_path, home, env


def test_tpu_pod_train_passes_arguments_intact_and_logs_per_worker(fakes):
    tmp_path, home, env = fakes
    result = subprocess.run(["bash", os.path.join(REPO, "launch", "tpu_pod.sh"), "train", *TRICKY], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    received = (tmp_path / "python_args.at_jax").read_text().splitlines()
    assert received == ["-m", "at_jax.train", *TRICKY]
    logs = list((home / "at_jax_logs").iterdir())
    assert len(logs) == 1 and logs[0].name.startswith("worker-") and "trained" in logs[0].read_text()
    call = json.loads((tmp_path / "gcloud_calls").read_text().splitlines()[0])
    assert call[:4] == ["compute", "tpus", "tpu-vm", "ssh"] and "--worker=all" in call and "--zone=zone-a" in call


def test_tpu_pod_setup_installs_on_every_worker(fakes):
    tmp_path, home, env = fakes
    # the fake scp "copies" the archive by leaving it where the worker's ssh expects it
    env["PATH"] = env["PATH"]
    gcloud = tmp_path / "bin" / "gcloud"
    gcloud.write_text(gcloud.read_text().replace(
        'command = [', 'if sys.argv[1:5] == ["compute", "tpus", "tpu-vm", "scp"]:\n'
        '    import shutil; shutil.copy(sys.argv[5], os.path.join(os.environ["HOME"], "at_jax.tar.gz"))\n'
        'command = ['))
    result = subprocess.run(["bash", os.path.join(REPO, "launch", "tpu_pod.sh"), "setup"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (home / "at_jax" / "at_jax" / "train.py").is_file()  # the checkout unpacked on the worker
    pip_calls = (tmp_path / "pip_calls").read_text()
    assert "jax[tpu]" in pip_calls and "at_jax[gcs]" in pip_calls


def test_tpu_pod_without_an_action_says_how(fakes):
    _, _, env = fakes
    result = subprocess.run(["bash", os.path.join(REPO, "launch", "tpu_pod.sh")], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "usage" in result.stderr


def test_multihost_passes_arguments_intact_and_logs(fakes):
    tmp_path, home, env = fakes
    env.update(COORDINATOR="host0:1234", NUM_PROCESSES="2", PROCESS_ID="1", LOG_DIR=str(tmp_path / "logs"))
    result = subprocess.run(["bash", os.path.join(REPO, "launch", "multihost.sh"), *TRICKY], env=env,
                            cwd=home / "at_jax", capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "python_args.at_jax").read_text().splitlines() == ["-m", "at_jax.train", *TRICKY]
    assert "trained" in (tmp_path / "logs" / "process-1.log").read_text()


def test_slurm_script_runs_one_process_per_gpu():
    script = open(os.path.join(REPO, "launch", "slurm.sbatch")).read()
    assert "#SBATCH --ntasks-per-node=8" in script and "#SBATCH --gpus-per-node=8" in script
    assert "AT_JAX_DISTRIBUTED=1" in script and "AT_JAX_LOCAL_DEVICES" in script and '"$@"' in script

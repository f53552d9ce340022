"""torchvision ResNet weights -> at_jax: logits equal torchvision's (committed fixture), bad files refused."""
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import at_jax
import torchvision_reference as reference
from at_jax import models
from at_jax.errors import CheckpointError
from at_jax.models.torchvision_weights import variables_from_torchvision
from trainer_utils import REPO

FIXTURE = np.load(pathlib.Path(__file__).parent / "fixtures" / "torchvision_resnets.npz")
ARCHS = ("resnet18", "resnet34", "resnet50")


def layout(arch):
    return [(key, tuple(shape)) for key, shape in json.loads(str(FIXTURE[f"{arch}/layout"]))]


def template(arch):
    model = models.create(arch, reference.NUM_CLASSES)
    return model, jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False))


@pytest.mark.parametrize("arch", ARCHS)
def test_imported_logits_equal_torchvisions(arch):
    model, shapes = template(arch)
    variables = variables_from_torchvision(reference.state_dict(layout(arch)), shapes)
    logits, features = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, reference.inputs())
    expected = FIXTURE[f"{arch}/logits"]
    error = np.abs(np.asarray(logits, np.float64) - expected).max() / np.abs(expected).max()
    assert error < 2e-5, f"{arch}: max logit error {error:.2e} of the largest logit"
    assert len(features) == 4


def test_another_architecture_or_missing_keys_are_refused():
    _, shapes = template("resnet18")
    with pytest.raises(CheckpointError, match="does not have"):
        variables_from_torchvision(reference.state_dict(layout("resnet34")), shapes)
    partial = reference.state_dict(layout("resnet18"))
    del partial["layer3.1.bn2.running_var"]
    with pytest.raises(CheckpointError, match="missing weights: batch_stats/layer3_1/bn2/var"):
        variables_from_torchvision(partial, shapes)
    bottleneck = reference.state_dict(layout("resnet50"))
    with pytest.raises(CheckpointError, match="does not fit"):
        variables_from_torchvision(bottleneck, shapes)
    extra = dict(reference.state_dict(layout("resnet18")), **{"head.weight": np.zeros((3, 3), np.float32)})
    with pytest.raises(CheckpointError, match="head.weight"):
        variables_from_torchvision(extra, shapes)


@pytest.fixture(scope="module")
def torch():
    """torch, to write .pth files (not a CI dependency: these tests skip without it)."""
    return pytest.importorskip("torch", reason="writing .pth files needs torch (not a CI dependency)")


def _import(tmp_path, weights, arch="resnet18", workdir="run"):
    return subprocess.run([sys.executable, "-m", "at_jax.import_torchvision", f"--arch={arch}",
                           f"--weights={weights}", f"--workdir={tmp_path / workdir}"], capture_output=True,
                          text=True, cwd=REPO, timeout=300)


@pytest.fixture(scope="module")
def resnet18_pth(tmp_path_factory, torch):
    path = tmp_path_factory.mktemp("pth") / "resnet18.pth"
    torch.save({key: torch.from_numpy(np.asarray(value)) for key, value in
                reference.state_dict(layout("resnet18")).items()}, path)
    return path


def test_cli_writes_a_finished_run_that_loads_as_model_and_teacher(tmp_path, resnet18_pth):
    result = _import(tmp_path, resnet18_pth)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "imported resnet18 (10 classes" in result.stdout
    model, variables = at_jax.load_model(str(tmp_path / "run"))
    logits, _ = model.apply(variables, reference.inputs(), train=False)
    expected = FIXTURE["resnet18/logits"]
    assert np.abs(np.asarray(logits) - expected).max() / np.abs(expected).max() < 2e-5
    saved = json.load(open(tmp_path / "run" / "config.json"))
    assert saved["dataset"]["mean"] == [0.485, 0.456, 0.406] and saved["num_classes"] == 10
    from at_jax.training.checkpoint import load_run  # pylint: disable=import-outside-toplevel
    assert load_run(str(tmp_path / "run"), role="teacher").config["model"] == "resnet18"
    again = _import(tmp_path, resnet18_pth)  # an existing run is never overwritten
    assert again.returncode == 2 and "already holds a run" in again.stderr


def _assert_refused(result, tmp_path, message):
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("at_jax:")]
    assert len(lines) == 1 and message in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not os.path.exists(tmp_path / "run")


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch /tmp/at_jax_pickle_ran",))


def test_bad_files_are_refused_in_one_line_and_nothing_is_written(tmp_path, resnet18_pth, torch):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(resnet18_pth.read_bytes()[:5000])
    _assert_refused(_import(tmp_path, truncated), tmp_path, "cannot read")
    malicious = tmp_path / "malicious.pth"
    torch.save({"conv1.weight": RunsCode()}, malicious)
    _assert_refused(_import(tmp_path, malicious), tmp_path, "refused to load")
    assert not os.path.exists("/tmp/at_jax_pickle_ran")
    _assert_refused(_import(tmp_path, resnet18_pth, arch="resnet34"), tmp_path, "missing weights")
    _assert_refused(_import(tmp_path, tmp_path / "none.pth"), tmp_path, "not a file")

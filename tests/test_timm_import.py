"""timm weights -> at_jax: logits equal timm's (committed fixture), the real models' layouts map, the CLI
writes a run that loads, bad files are refused in one line with nothing written."""
import importlib.util
import json
import os
import pickle
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

import at_jax
import timm_reference as reference
from at_jax.errors import CheckpointError, WorkdirError
from at_jax.models.timm_weights import variables_from_timm
from at_jax.training.checkpoint import load_run
from at_jax.training.imported_run import read_state_dict, template
from at_jax.training.timm_import import TIMM_MODELS, import_timm, write_timm_run
from trainer_utils import REPO

FIXTURE = np.load(pathlib.Path(__file__).parent / "fixtures" / "timm_models.npz")
TOLERANCE = 2e-5  # of the largest logit


def layout(entry):
    return [(key, tuple(shape)) for key, shape in json.loads(str(FIXTURE[entry]))]


def shapes_only(entry):
    """The state dict of a layout as zero-stride views: full-size models checked without their memory."""
    return {key: np.broadcast_to(np.float32(0), shape) for key, shape in layout(entry)}


def relative_error(logits, expected):
    return np.abs(np.asarray(logits, np.float64) - expected).max() / np.abs(expected).max()


@pytest.mark.parametrize("case", [case for case in reference.CASES if case != "convnext_atto"])
def test_imported_logits_equal_timms(case):
    """(convnext_atto's logits are checked through the command line below.)"""
    name, _, kwargs = reference.CASES[case]
    spec = TIMM_MODELS[name]
    state = reference.state_dict(layout(f"{case}/layout"))
    num_classes = FIXTURE[f"{case}/logits"].shape[1]
    model = at_jax.models.create(spec.model, num_classes, **kwargs)
    variables = variables_from_timm(state, template(spec.model, num_classes, kwargs, reference.IMAGE_SIZE),
                                    spec.model)
    logits, features = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, reference.inputs())
    error = relative_error(logits, FIXTURE[f"{case}/logits"])
    assert error < TOLERANCE, f"{case}: max logit error {error:.2e} of the largest logit"
    assert len(features) == (2 if kwargs.get("depth") == 2 else 1 if kwargs.get("depth") == 1 else 4)


@pytest.mark.parametrize("name", sorted(TIMM_MODELS))
def test_the_real_models_map_key_by_key(name):
    """Every key and shape of timm's full-size model fills at_jax's model exactly (no weights needed)."""
    spec = TIMM_MODELS[name]
    shapes = template(spec.model, 1000, dict(spec.model_kwargs), spec.image_size)
    variables = variables_from_timm(shapes_only(f"{name}/full_layout"), shapes, spec.model)
    count = sum(np.prod(shape) for key, shape in layout(f"{name}/full_layout") if not key.endswith("_tracked"))
    assert sum(leaf.size for leaf in jax.tree.leaves(variables["params"])) + sum(
        leaf.size for leaf in jax.tree.leaves(variables.get("batch_stats", {}))) == count


def test_another_architecture_or_missing_keys_are_refused():
    vit_ti = template("vit-ti/16", 1000, {"image_size": 224}, 224)
    with pytest.raises(CheckpointError, match="shapes of another architecture: cls_token"):
        variables_from_timm(shapes_only("deit_small_patch16_224/full_layout"), vit_ti, "vit-ti/16")
    with pytest.raises(CheckpointError, match="does not have: conv1.weight, bn1.weight"):
        variables_from_timm(shapes_only("resnet18/full_layout"), vit_ti, "vit-ti/16")
    atto = template("convnext-atto", 1000, {}, 224)
    with pytest.raises(CheckpointError, match="does not have: stages.0.blocks.2.gamma"):
        variables_from_timm(shapes_only("convnext_tiny/full_layout"), atto, "convnext-atto")
    partial = shapes_only("convnext_atto/full_layout")
    del partial["stages.2.blocks.5.gamma"]
    with pytest.raises(CheckpointError, match="missing weights: params/stages_2/blocks_5/gamma"):
        variables_from_timm(partial, atto, "convnext-atto")


def test_the_command_offers_exactly_the_table_s_models():
    """The entry point's own list (kept free of jax for --help); not imported here: its flags are global."""
    result = subprocess.run([sys.executable, "-m", "at_jax.import_timm", "--model=bogus"], capture_output=True,
                            text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2
    offered = result.stderr.split("one of", 1)[1]
    assert all(name in offered for name in TIMM_MODELS) and offered.count("|") == len(TIMM_MODELS) - 1


def test_a_reduced_variant_is_a_run_that_loads(tmp_path):
    name, _, kwargs = reference.CASES["vit_tiny_patch16_224"]
    summary = write_timm_run(name, reference.state_dict(layout("vit_tiny_patch16_224/layout")), str(tmp_path / "run"),
                             model_kwargs=kwargs)
    assert summary["model"] == "vit-ti/16" and summary["num_classes"] == 10
    model, variables = at_jax.load_model(str(tmp_path / "run"))
    logits, _ = model.apply(variables, reference.inputs(), train=False)
    assert relative_error(logits, FIXTURE["vit_tiny_patch16_224/logits"]) < TOLERANCE
    saved = json.load(open(tmp_path / "run" / "config.json"))
    assert saved["dataset"]["mean"] == [0.5, 0.5, 0.5] and saved["dataset"]["image_size"] == 32
    assert saved["model_kwargs"] == {"depth": 2, "image_size": 32}


def _import(tmp_path, weights, name="convnext_atto", workdir="run"):
    return subprocess.run([sys.executable, "-m", "at_jax.import_timm", f"--model={name}", f"--weights={weights}",
                           f"--workdir={tmp_path / workdir}"], capture_output=True, text=True, cwd=REPO, timeout=300)


@pytest.fixture(scope="module")
def atto_state():
    return reference.state_dict(layout("convnext_atto/layout"))


@pytest.fixture(scope="module")
def atto_safetensors(tmp_path_factory, atto_state):
    from safetensors.numpy import save_file  # pylint: disable=import-outside-toplevel
    path = tmp_path_factory.mktemp("safetensors") / "model.safetensors"
    save_file({key: np.ascontiguousarray(value) for key, value in atto_state.items()}, str(path))
    return path


def test_cli_writes_a_finished_run_that_loads_as_model_and_teacher(tmp_path, atto_safetensors):
    result = _import(tmp_path, atto_safetensors)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "imported convnext_atto as convnext-atto (1000 classes, 3,695,520 parameters)" in result.stdout
    model, variables = at_jax.load_model(str(tmp_path / "run"))
    logits, _ = model.apply(variables, reference.inputs(), train=False)
    assert relative_error(logits, FIXTURE["convnext_atto/logits"]) < TOLERANCE
    saved = json.load(open(tmp_path / "run" / "config.json"))
    assert saved["dataset"]["mean"] == [0.485, 0.456, 0.406] and saved["dataset"]["image_size"] == 224
    assert saved["num_classes"] == 1000 and saved["imported_from"]["timm"] == "convnext_atto"
    assert load_run(str(tmp_path / "run"), role="teacher").config["model"] == "convnext-atto"
    with pytest.raises(WorkdirError, match="already holds a run"):  # an existing run is never overwritten
        import_timm("convnext_atto", str(atto_safetensors), str(tmp_path / "run"))


def test_pth_and_bin_read_as_safetensors_do(tmp_path, atto_state, atto_safetensors):
    torch = pytest.importorskip("torch", reason="writing .pth files needs torch (not a CI dependency)")
    pth = tmp_path / "pytorch_model.bin"
    torch.save({"state_dict": {key: torch.from_numpy(value) for key, value in atto_state.items()}}, pth)
    from_pth, from_safetensors = read_state_dict(str(pth)), read_state_dict(str(atto_safetensors))
    assert list(from_pth) == list(atto_state) and all(np.array_equal(from_pth[key], from_safetensors[key])
                                                      for key in atto_state)


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch /tmp/at_jax_timm_pickle_ran",))


def test_a_code_running_pickle_is_refused_in_one_line_and_nothing_is_written(tmp_path):
    malicious = tmp_path / "malicious.pth"  # refused by torch's weights_only (or: torch is not installed)
    malicious.write_bytes(pickle.dumps({"stem.0.weight": RunsCode()}))
    result = _import(tmp_path, malicious)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("at_jax:")]
    expected = "refused to load" if importlib.util.find_spec("torch") else "needs torch"
    assert len(lines) == 1 and expected in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not os.path.exists(tmp_path / "run")
    assert not os.path.exists("/tmp/at_jax_timm_pickle_ran")


def test_bad_files_are_refused_and_nothing_is_written(tmp_path, atto_safetensors):
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(atto_safetensors.read_bytes()[:100_000])
    text = tmp_path / "notes.txt"
    text.write_text("these are not weights\n")
    refusals = [("convnext_atto", truncated, "cannot read .*truncated.safetensors as a safetensors file"),
                ("convnext_atto", text, "cannot read .*notes.txt as a torch state dict" if
                 importlib.util.find_spec("torch") else "needs torch"),
                ("resnet18", atto_safetensors, "keys this architecture does not have: head.fc.bias, head.fc.weight, "
                                                    "head.norm.bias"),   # in the file's order, every time
                ("convnext_tiny", atto_safetensors, "does not fit"),
                ("resnet18", tmp_path / "none.pth", "not a file")]
    for name, weights, message in refusals:
        with pytest.raises(CheckpointError, match=message):
            import_timm(name, str(weights), str(tmp_path / "run"))
        assert not os.path.exists(tmp_path / "run")
    with pytest.raises(CheckpointError, match="unknown timm model 'vit_base_patch16_224'"):
        import_timm("vit_base_patch16_224", str(atto_safetensors), str(tmp_path / "run"))

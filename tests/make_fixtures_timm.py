"""timm reference logits for the timm importer.

``python tests/make_fixtures_timm.py`` (a venv with torch and timm; not a CI dependency) writes
tests/fixtures/timm_models.npz: for each case of tests/timm_reference.py (small variants of the six timm
models) the state dict's keys and shapes and timm's logits for the reference weights on
``timm_reference.inputs()``, and the keys and shapes of the six models at full size. Only keys, shapes and
logits are stored; the tests rebuild the weights.

``python tests/make_fixtures_timm.py --check-full --jax-python=.venv/bin/python [--out=/tmp/at_jax_timm]``
is the full-size parity check (run by hand, files outside the repo, 20-110 MB each): for each of the six
models at its real size it saves two state dicts -- timm's own random init (``pretrained=False``) and
every parameter replaced by the reference weights (timm's init leaves ConvNeXt's layer scale at 1e-6, a
ResNet's last BN of each block at 0 and BN statistics at 0 / 1, which hide most of the network) --
half as .safetensors and half as .pth, with timm's logits for two 224 x 224 images. Then, with
``--jax-python`` (the at_jax venv), each file goes through ``python -m at_jax.import_timm`` (the .pth
files with the torch venv's packages appended to the path) and
``at_jax.load_model``, and the largest logit differences are printed; the recorded input normalisation is
compared with timm's ``pretrained_cfg``. It exits non-zero when an error exceeds 1e-4 of the largest logit.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import timm_reference as reference  # noqa: E402

OUT = os.path.join(HERE, "fixtures", "timm_models.npz")
FULL = ("vit_tiny_patch16_224", "deit_small_patch16_224", "convnext_atto", "convnext_tiny", "resnet18", "resnet50")
TOLERANCE = 1e-4


def timm_logits(model, state, images):
    import torch  # pylint: disable=import-outside-toplevel
    model.load_state_dict({key: torch.from_numpy(np.asarray(value)) for key, value in state.items()})
    with torch.no_grad():
        return model.eval()(torch.from_numpy(images).permute(0, 3, 1, 2)).double().numpy()


def write_fixture() -> None:
    import timm  # pylint: disable=import-outside-toplevel
    import torch  # pylint: disable=import-outside-toplevel
    arrays = {}
    for case, (name, overrides, _) in reference.CASES.items():
        model = timm.create_model(name, pretrained=False, **overrides)
        layout = [(key, tuple(value.shape)) for key, value in model.state_dict().items()]
        logits = timm_logits(model, reference.state_dict(layout), reference.inputs())
        arrays[f"{case}/logits"] = logits
        arrays[f"{case}/layout"] = np.asarray(json.dumps(layout))
        print(case, logits.shape, float(np.abs(logits).max()))
    for name in FULL:  # the real models' keys and shapes (no weights): the mapping is checked at full size
        model = timm.create_model(name, pretrained=False)
        arrays[f"{name}/full_layout"] = np.asarray(json.dumps([(key, tuple(value.shape))
                                                                for key, value in model.state_dict().items()]))
    np.savez_compressed(OUT, torch_version=np.asarray(torch.__version__), timm_version=np.asarray(timm.__version__),
                        **arrays)


def save(path: str, state: dict) -> None:
    import torch  # pylint: disable=import-outside-toplevel
    tensors = {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in state.items()}
    if path.endswith(".safetensors"):
        from safetensors.torch import save_file  # pylint: disable=import-outside-toplevel
        save_file(tensors, path)
    else:
        torch.save(tensors, path)


def torch_side(out: str) -> None:
    """The full-size state dicts, timm's logits and pretrained configs under ``out``."""
    import timm  # pylint: disable=import-outside-toplevel
    import torch  # pylint: disable=import-outside-toplevel
    torch.manual_seed(0)
    images = reference.inputs(224)
    record = {"timm": timm.__version__, "torch": torch.__version__,
              "torch_site": os.path.dirname(os.path.dirname(os.path.abspath(torch.__file__)))}
    cases = []
    for index, name in enumerate(FULL):
        model = timm.create_model(name, pretrained=False).eval()
        cfg = model.pretrained_cfg
        record[name] = {key: cfg.get(key) for key in ("tag", "mean", "std", "input_size", "crop_pct",
                                                      "interpolation")}
        init = {key: value.numpy() for key, value in model.state_dict().items()}
        layout = [(key, tuple(value.shape)) for key, value in init.items()]
        for kind, state in (("timm_init", init), ("reference", reference.state_dict(layout))):
            suffix = ".safetensors" if (index + (kind == "reference")) % 2 == 0 else ".pth"
            path = os.path.join(out, f"{name}.{kind}{suffix}")
            save(path, state)
            np.save(os.path.join(out, f"{name}.{kind}.logits.npy"), timm_logits(model, state, images))
            cases.append([name, kind, path])
            print("timm:", name, kind, os.path.getsize(path) // 2**20, "MiB", flush=True)
    record["cases"] = cases
    with open(os.path.join(out, "timm.json"), "w") as file:
        json.dump(record, file, indent=1)


def jax_side(out: str) -> int:
    """Imports each file with the CLI, compares at_jax's logits with timm's; returns the exit code."""
    import at_jax  # pylint: disable=import-outside-toplevel
    from at_jax.training.timm_import import TIMM_MODELS  # pylint: disable=import-outside-toplevel
    with open(os.path.join(out, "timm.json")) as file:
        record = json.load(file)
    images, worst = reference.inputs(224), 0.0
    print(f"timm {record['timm']}, torch {record['torch']}, jax {__import__('jax').__version__}")
    for name, kind, path in record["cases"]:
        workdir = os.path.join(out, f"run_{name}_{kind}")
        shutil.rmtree(workdir, ignore_errors=True)
        # torch for the .pth files: the torch venv's packages after the at_jax venv's (none shadowed).
        command = ("import runpy, sys; sys.path.append(sys.argv.pop(1)); "
                   "runpy.run_module('at_jax.import_timm', run_name='__main__')")
        result = subprocess.run([sys.executable, "-c", command, record["torch_site"], f"--model={name}",
                                 f"--weights={path}", f"--workdir={workdir}"], capture_output=True, text=True,
                                check=False)
        if result.returncode:
            print(name, kind, "IMPORT FAILED:", result.stderr.strip().splitlines()[-1:])
            worst = np.inf
            continue
        model, variables = at_jax.load_model(workdir)
        logits = np.asarray(model.apply(variables, images, train=False)[0], np.float64)
        expected = np.load(os.path.join(out, f"{name}.{kind}.logits.npy"))
        error = float(np.abs(logits - expected).max())
        relative = error / float(np.abs(expected).max())
        elementwise = float((np.abs(logits - expected) / np.abs(expected)).max())
        worst = max(worst, relative)
        print(f"{name:24s} {kind:10s} {os.path.basename(path):40s} max |logit| {np.abs(expected).max():9.4f}  "
              f"max abs error {error:.2e}  relative to the largest logit {relative:.2e}  max |error / logit| "
              f"{elementwise:.2e}", flush=True)
    for name in FULL:
        spec, cfg = TIMM_MODELS[name], record[name]
        ours = (spec.tag, list(spec.mean), list(spec.std), [3, spec.image_size, spec.image_size], spec.crop_pct,
                spec.interpolation)
        theirs = (cfg["tag"], list(cfg["mean"]), list(cfg["std"]), list(cfg["input_size"]), cfg["crop_pct"],
                  cfg["interpolation"])
        print(f"{name}: pretrained_cfg {'matches' if ours == theirs else f'DIFFERS: ours {ours}, timm {theirs}'}")
        worst = worst if ours == theirs else np.inf
    return 0 if worst < TOLERANCE else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check-full", action="store_true")
    parser.add_argument("--jax-python", default="", help="the at_jax venv's python (for --check-full)")
    parser.add_argument("--out", default="/tmp/at_jax_timm")
    parser.add_argument("--jax-side", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.jax_side:
        return jax_side(args.out)
    if not args.check_full:
        write_fixture()
        return 0
    os.makedirs(args.out, exist_ok=True)
    torch_side(args.out)
    if not args.jax_python:
        print(f"state dicts and timm logits in {args.out}; compare with --jax-python=PYTHON")
        return 0
    repo = os.path.dirname(HERE)
    return subprocess.run([args.jax_python, os.path.abspath(__file__), "--jax-side", f"--out={args.out}"],
                          cwd=repo, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())

"""Writes tests/fixtures/torchvision_resnets.npz: torchvision's logits for the weights of
tests/torchvision_reference.py, with the state-dict keys and shapes (ResNet-18/34/50, 10 classes).

Needs torch and torchvision (not a CI dependency): ``/tmp/tvenv/bin/python tests/make_fixtures_torchvision.py``
with ``pip install torch==2.14.1 torchvision==0.29.1 numpy`` in that venv.
"""
import json
import os
import sys

import numpy as np
import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torchvision_reference as reference  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "torchvision_resnets.npz")


def main() -> None:
    arrays = {}
    for arch in ("resnet18", "resnet34", "resnet50"):
        model = getattr(torchvision.models, arch)(weights=None, num_classes=reference.NUM_CLASSES).eval()
        layout = [(key, tuple(value.shape)) for key, value in model.state_dict().items()]
        model.load_state_dict({key: torch.from_numpy(np.asarray(value))
                               for key, value in reference.state_dict(layout).items()})
        with torch.no_grad():
            logits = model(torch.from_numpy(reference.inputs()).permute(0, 3, 1, 2)).numpy()
        arrays[f"{arch}/logits"] = logits.astype(np.float64)
        arrays[f"{arch}/layout"] = np.asarray(json.dumps(layout))
        print(arch, logits.shape, float(np.abs(logits).max()))
    np.savez_compressed(OUT, torch_version=np.asarray(torch.__version__),
                        torchvision_version=np.asarray(torchvision.__version__), **arrays)


if __name__ == "__main__":
    main()

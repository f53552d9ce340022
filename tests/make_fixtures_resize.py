"""Writes fixtures/antialiased_resize_torch.npz: PyTorch's antialiased bilinear resize of random NHWC images.

Run in a venv with torch (``python tests/make_fixtures_resize.py``); the test compares
``at_jax.spatial.resize_antialiased`` with it (at_jax.data.views: a student at its own input size).
"""
import pathlib

import numpy as np
import torch


def main() -> None:
    images = np.random.RandomState(0).rand(2, 12, 12, 3).astype(np.float32)
    out = {"images": images}
    for size in (5, 7, 12, 16):
        resized = torch.nn.functional.interpolate(torch.tensor(images).permute(0, 3, 1, 2), size=(size, size),
                                                  mode="bilinear", antialias=True, align_corners=False)
        out[f"size_{size}"] = resized.permute(0, 2, 3, 1).numpy()
    np.savez_compressed(pathlib.Path(__file__).parent / "fixtures" / "antialiased_resize_torch.npz", **out)


if __name__ == "__main__":
    main()

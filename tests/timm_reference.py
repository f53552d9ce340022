"""Cases, deterministic weights and inputs for the timm-import fixtures, from numpy alone (no torch needed).

Each case is a timm model (its name and ``timm.create_model`` overrides that keep it small) and the at_jax
model keywords that build the same network. Weights are :func:`torchvision_reference.fill` (He-scaled convs
and linears, BN weight ~ U(0.5, 1.5), non-trivial running statistics; ConvNeXt's layer scale ``gamma`` and
LayerNorm weights, being 1-D, ~ U(0.5, 1.5), so every block counts) plus ``cls_token`` and ``pos_embed``
~ N(0, 0.5^2). ``tests/make_fixtures_timm.py`` loads them into timm and stores its logits with the state
dict's keys and shapes; the tests rebuild the same dict and compare at_jax's logits.
"""
import numpy as np

import torchvision_reference

SEED = torchvision_reference.SEED
IMAGE_SIZE = 32  # the committed cases' input: (2, 32, 32, 3) NHWC

#: case -> (timm name, timm.create_model overrides, at_jax model keywords). The at_jax model is the timm
#: name's (at_jax.training.timm_import.TIMM_MODELS). convnext_atto_linear_mlp is atto built with linear
#: MLPs (conv_mlp=False): the layout of convnext_tiny's blocks at atto's size. resnet50 has no case: its
#: bottlenecks are torchvision's (tests/test_torchvision_import.py), its keys are checked at full size.
CASES = {
    "vit_tiny_patch16_224": ("vit_tiny_patch16_224", {"depth": 2, "img_size": 32, "num_classes": 10},
                             {"depth": 2, "image_size": 32}),
    "deit_small_patch16_224": ("deit_small_patch16_224", {"depth": 1, "img_size": 32, "num_classes": 10},
                               {"depth": 1, "image_size": 32}),
    "convnext_atto": ("convnext_atto", {}, {}),
    "convnext_atto_linear_mlp": ("convnext_atto", {"conv_mlp": False, "num_classes": 10}, {}),
    "resnet18": ("resnet18", {"num_classes": 10}, {}),
}


def fill(name: str, shape: tuple, index: int) -> np.ndarray:
    if name in ("cls_token", "pos_embed"):
        return np.random.default_rng([SEED, index]).normal(0.0, 0.5, shape).astype(np.float32)
    return torchvision_reference.fill(name, shape, index)


def state_dict(keys_and_shapes: list) -> dict:
    """``{key: array}`` for ``[(key, shape), ...]`` in timm's order."""
    return {key: fill(key, tuple(shape), index) for index, (key, shape) in enumerate(keys_and_shapes)}


def inputs(image_size: int = IMAGE_SIZE, batch: int = 2) -> np.ndarray:
    rng = np.random.default_rng([SEED, 20_000, image_size])
    return rng.normal(0.0, 1.0, (batch, image_size, image_size, 3)).astype(np.float32)

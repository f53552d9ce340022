"""configs/tiny.py with a student counted by hand (tests/test_compile_for.py): one 3x3 convolution (3 -> 16
channels, no bias), global average pooling and a dense head, registered as ``one-conv``."""
import os
import sys

import flax.linen as nn
import jax.numpy as jnp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs"))
import tiny  # noqa: E402  (configs/tiny.py)

from at_jax import models  # noqa: E402

#: Hand counts on the tiny config's 16x16x3 images: the convolution's FLOPs per image (2 x multiply-adds over
#: the taps inside the image: with "SAME" padding each axis has 16 x 3 - 2 = 46 (position, offset) pairs) and
#: the parameters' bytes (f32).
CONV_FLOPS_PER_IMAGE = 2 * (46 * 46) * 3 * 16
PARAMETER_BYTES = 4 * (3 * 3 * 3 * 16 + 16 * 10 + 10)


@models.register("one-conv", "one 3x3 convolution and a head (tests only)")
class OneConv(nn.Module):
    num_classes: int = 10
    dtype: object = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(16, (3, 3), padding="SAME", use_bias=False, dtype=self.dtype, name="conv")(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x.mean(axis=(1, 2)))


def get_config(argument=None):
    config = tiny.get_config(argument)
    config.model = "one-conv"
    return config

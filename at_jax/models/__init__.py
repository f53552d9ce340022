"""flax.linen models returning ``(logits, features)`` and the registry that builds them by name."""
from at_jax.models.registry import available, create, register

# Importing a model file registers its names.
from at_jax.models import convnext, cra, nin, resnet, vgg_att, vit, wrn  # noqa: E402,F401  pylint: disable=wrong-import-position

__all__ = ["available", "create", "register"]

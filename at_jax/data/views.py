"""Student and teacher at their own input sizes: what the input path loads, and the two views of it.

``dataset.image_size`` is the student's input side and ``teacher.image_size`` the teacher's (0: the student's).
The input path delivers one image per example (decoded and augmented once) and each network's view is an
antialiased resize of it on the device (:func:`at_jax.spatial.resize_antialiased`); a view of the delivered
size is the image itself, so a run without ``teacher.image_size`` computes exactly what it did before.

What is delivered depends on the dataset's loader:

- loaders with an ``image_size`` option (image folders, ImageNet, CUB, ``tfds:<name>``, ``synthetic``, the
  streaming path) decode at the larger of the two sizes, so that the larger view is never an upsample;
- the others (cluttered MNIST, digits, CIFAR: generated or fixed-size data) deliver their own size, and
  ``dataset.image_size`` (when set) resizes it for the student, e.g. the 40-pixel canvas seen at 20 pixels.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

#: The key of ``config.dataset`` naming the student's input side (0 or absent: the size the data has).
SIZE_KEY = "image_size"


@dataclasses.dataclass(frozen=True)
class ImageViews:
    """Sides of the square inputs: ``student`` and ``teacher`` (0: the delivered image's own size)."""
    student: int = 0
    teacher: int = 0

    def sizes(self, delivered: int) -> tuple[int, int]:
        """(student side, teacher side) for images delivered at side ``delivered``."""
        student = self.student or delivered
        return student, self.teacher or student

    @property
    def differ(self) -> bool:
        return bool(self.teacher) and self.teacher != self.student


def configured_sizes(dataset_config: Mapping[str, Any], teacher_size: int) -> ImageViews:
    """The sizes a run's config asks for: ``dataset.image_size`` (0 when absent) and ``teacher.image_size``."""
    student = int(dataset_config.get(SIZE_KEY, 0) or 0)
    teacher = int(teacher_size or 0)
    for key, size in (("dataset.image_size", student), ("teacher.image_size", teacher)):
        if size < 0:
            raise ValueError(f"{key} must be >= 0 (0: the data's own size), got {size}")
    return ImageViews(student, teacher or student)


def loader_size(views: ImageViews) -> int:
    """The ``image_size`` to ask a loader that takes one for: the larger view (0: the loader's default)."""
    if not views.student:
        return 0
    return max(views.student, views.teacher)


def run_views(config: Mapping[str, Any]) -> ImageViews:
    """The views of a run's config (a ConfigDict or a saved run's ``config.json`` dict)."""
    teacher = config.get("teacher", None) or {}
    return configured_sizes(config.get("dataset", None) or {}, teacher.get("image_size", 0) or 0)

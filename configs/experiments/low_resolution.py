"""A student at a lower input resolution than its teacher, on the embedded task (cluttered MNIST):
``--config=configs/experiments/low_resolution.py:teacher_size=40|20,split=val|test``.

The WRN-10-1 student sees the 40x40 canvas resized to 20x20 (``dataset.image_size = 20``, antialiased, on the
device); the WRN-10-2 teacher sees the same augmented canvas at ``teacher_size`` (``teacher.image_size``; it
is trained at that size in the experiment, 12 epochs as the embedded default). ``teacher_size=20`` is the
reference: the same student with a teacher that sees no more pixels than it does. Everything else is the
embedded default (students 6 epochs, batch 64, SGD). The student's group maps are 20x20, 10x10 and 5x5; a
40-pixel teacher's (40, 20, 10) are average-pooled to them. The AT weight is chosen on the validation digits
(``split=val``, configs/experiments/_embedded_protocol.py); ``CHOSEN_BETA`` holds the choice.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _embedded_protocol import experiment  # noqa: E402
from cifar import parse_arguments  # noqa: E402  (configs/cifar.py)

from at_jax.default_config import get_config as get_base_config  # noqa: E402

STUDENT_SIZE = 20
TEACHER_SIZES = (40, 20)
#: The AT weight each teacher size's validation sweep chose (lowest median validation error of 3 seeds;
#: ``split=val``). Teacher at 40 px, median validation error (%) of the student alone 21.6, with AT at
#: beta 30 / 100 / 300 / 1000: 18.8 / 20.2 / 33.9 / 72.5. Teacher at 20 px: 21.6 alone; 20.5 / 17.1 / 22.0 / 73.4.
CHOSEN_BETA = {40: 30.0, 20: 100.0}


def get_config(argument: str | None = None):
    values = parse_arguments(argument, {"teacher_size": "40", "split": "test"})
    teacher_size = int(values["teacher_size"])
    if teacher_size not in TEACHER_SIZES:
        raise ValueError(f"teacher_size must be one of {TEACHER_SIZES}, got {teacher_size}")
    base = get_base_config()
    base.dataset.image_size = STUDENT_SIZE
    base.teacher.image_size = teacher_size
    base.metrics.attention_figure = False
    description = (f"Cluttered MNIST, a WRN-10-2 teacher at {teacher_size}x{teacher_size} and WRN-10-1 students at "
                   f"{STUDENT_SIZE}x{STUDENT_SIZE} (the canvas resized) alone, +AT, +KD, +AT+KD; paired seeds.")
    return experiment(base, values["split"], CHOSEN_BETA[teacher_size],
                      name=f"cluttered MNIST: WRN-10-2 at {teacher_size} px -> WRN-10-1 at {STUDENT_SIZE} px",
                      description=description)

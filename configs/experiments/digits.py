"""The embedded default as an experiment: cluttered scikit-learn digits (offline), a WRN-10-2 teacher and
WRN-10-1 students with none / AT / KD / AT+KD, 5 seeds each (configs/digits.py's recipe; AT beta
as there, 10: the official 1e3 stalls this student).

``python -m at_jax.experiment --config=configs/experiments/digits.py --workdir=runs/digits``
(a quick look: ``--config.seeds=1 --config.base.num_train_steps=50``). There are no paper numbers for
this data set.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from digits import get_config as get_digits_config  # noqa: E402  (configs/digits.py)

from at_jax.experiments.plan import make_experiment_config  # noqa: E402

DESCRIPTION = ("Cluttered scikit-learn digits (offline), a WRN-10-2 teacher and WRN-10-1 students with "
               "none / AT / KD / AT+KD (configs/digits.py's recipe); no paper numbers for this data set.")
METHODS = {
    "none": {},
    "at": {"at_beta": 10.0},
    "kd": {"kd_alpha": 0.9, "kd_temperature": 4.0},
    "at+kd": {"at_beta": 10.0, "kd_alpha": 0.9, "kd_temperature": 4.0},
}


def get_config():
    base = get_digits_config()
    return make_experiment_config(base, name="digits: WRN-10-2 -> WRN-10-1",
                                  methods=METHODS, seeds=5, description=DESCRIPTION)

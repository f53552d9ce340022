"""A CI-sized experiment: configs/tiny.py (WRN-10-1 on 16x16 synthetic data, a few steps) as teacher and
student, methods none and AT, 2 seeds. For smoke tests of the experiment runner and the figures.

``python -m at_jax.experiment --config=configs/experiments/smoke.py --workdir=/tmp/smoke_experiment``
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import tiny  # noqa: E402  (configs/tiny.py)

from at_jax.experiments.plan import make_experiment_config  # noqa: E402


def get_config():
    base = tiny.get_config()
    base.num_train_steps = 4
    base.eval_every_steps = 4
    base.metrics.writers = "jsonl"
    return make_experiment_config(base, name="smoke", methods={"none": {}, "at": {"at_beta": 1e3}}, seeds=2,
                                  description="CI-sized smoke test; the numbers mean nothing.")

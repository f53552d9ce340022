"""The protocol the embedded task's extended experiments share: settings chosen on the validation digits, then
paired seeds on the test digits, evaluated once.

``split=val`` runs the sweep that chooses the AT weight: the student alone and with AT at each of ``BETAS``,
3 seeds each (rule fixed before looking: the lowest median validation error wins; ties go to the smaller
weight). ``split=test`` runs the student alone, +AT, +KD and +AT+KD with the chosen weight over 5 seeds (the
same seed = the same initialisation and batch order for every method). KD is the embedded experiment's
(alpha 0.9, T 4), not tuned.
"""
import ml_collections

from at_jax.experiments.plan import make_experiment_config

BETAS = (30.0, 100.0, 300.0, 1000.0)
VAL_SEEDS, TEST_SEEDS = 3, 5
KD = {"kd_alpha": 0.9, "kd_temperature": 4.0}
SPLITS = ("val", "test")


def val_methods() -> dict:
    """The student alone, then AT at each weight of ``BETAS`` (``at_30``, ``at_100``, ...)."""
    return {"none": {}, **{f"at_{beta:g}": {"at_beta": beta} for beta in BETAS}}


def test_methods(at_beta: float) -> dict:
    return {"none": {}, "at": {"at_beta": at_beta}, "kd": dict(KD), "at+kd": {"at_beta": at_beta, **KD}}


def experiment(base: ml_collections.ConfigDict, split: str, at_beta: float, *, name: str,
               description: str) -> ml_collections.ConfigDict:
    """The experiment of ``split`` ("val": the weight sweep; "test": the four methods at ``at_beta``)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    base.dataset.eval_split = split
    if split == "val":
        return make_experiment_config(base, name=f"{name} (validation sweep of the AT weight)",
                                      methods=val_methods(), seeds=VAL_SEEDS, description=description)
    return make_experiment_config(base, name=name, methods=test_methods(at_beta), seeds=TEST_SEEDS,
                                  description=description)


"""What each way of pairing layers costs per train step, against the plain student step, in one process.

    python benchmarks/transfer_paths.py [--repeats 20] [--warmup 3] [--json]

The embedded task (cluttered MNIST, 40x40, batch 64) through the trainer's own set-up and compiled step
(``at_jax.training.setup.set_up``, one step per call): the plain WRN-10-1 student; with AT from a WRN-10-2
teacher on feature indices (``loss.at_pairs``) and on the same layers named by path (``loss.at_layers``); a
4-block ``vit-ti/4`` student alone and with AT through token maps from the WRN-10-2; the WRN-10-1 with AT from
that ViT; and the recipe keys' costs on the plain WRN-10-1 step (mixup + CutMix, EMA, both; with
AdamW + cosine + label smoothing). Teachers are trained for one step only (their weights do not change the time). Median seconds of
``--repeats`` steps after ``--warmup`` (compilation in the warm-up).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

VIT = ("vit-ti/4", {"depth": 4})
GROUPS = ("group0_block0", "group1_block0", "group2_block0")


def base_config(**changes):
    from at_jax.default_config import get_config  # pylint: disable=import-outside-toplevel
    config = get_config()
    config.pipeline, config.progress, config.metrics.writers, config.loss.at_beta = "", False, "jsonl", 0.0
    for key, value in changes.items():
        node, *path = config, *key.split(".")
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    return config


def variants(wrn_teacher: str, vit_teacher: str) -> dict:
    at = {"loss.at_beta": 300.0, "teacher.workdir": wrn_teacher}
    mixing = {"augment.mixup_alpha": 0.2, "augment.cutmix_alpha": 1.0}
    return {
        "wrn-10-1 plain": base_config(),
        "wrn-10-1 + mixup/CutMix": base_config(**mixing),
        "wrn-10-1 + EMA": base_config(**{"ema.decay": 0.999}),
        "wrn-10-1 + mixup/CutMix + EMA + AdamW/cosine/label smoothing": base_config(
            **mixing, **{"ema.decay": 0.999, "optimizer.name": "adamw", "optimizer.schedule": "cosine",
                         "loss.label_smoothing": 0.1}),
        "wrn-10-1 + AT (at_pairs, 3 groups)": base_config(**at),
        "wrn-10-1 + AT (at_layers, the same 3 groups)": base_config(
            **at, **{"loss.at_layers": tuple(zip(GROUPS, GROUPS))}),
        "vit-ti/4 (4 blocks) plain": base_config(model=VIT[0], model_kwargs=VIT[1]),
        "vit-ti/4 (4 blocks) + AT from wrn-10-2 (token maps)": base_config(model=VIT[0], model_kwargs=VIT[1], **at),
        "wrn-10-1 + AT from vit-ti/4 (token maps)": base_config(**{"loss.at_beta": 300.0, "teacher.model": VIT[0],
                                                                   "teacher.workdir": vit_teacher}),
    }


def step_seconds(config, workdir: str, warmup: int, repeats: int) -> list[float]:
    import jax  # pylint: disable=import-outside-toplevel
    from at_jax.training import multi_run  # pylint: disable=import-outside-toplevel
    from at_jax.training.loop import resume_or_start  # pylint: disable=import-outside-toplevel
    from at_jax.training.setup import set_up  # pylint: disable=import-outside-toplevel

    job = multi_run.plan_job(config, workdir)
    training = resume_or_start(set_up(config, job), job)
    try:
        return common.time_calls(lambda: (training.advance(1), jax.block_until_ready(training.state)),
                                 warmup=warmup, repeats=repeats)
    finally:
        training.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    common.apply_xla_cpu_flags()
    from at_jax.training import train_and_evaluate  # pylint: disable=import-outside-toplevel

    with tempfile.TemporaryDirectory() as root:
        teachers = {name: os.path.join(root, name) for name in ("wrn", "vit")}
        train_and_evaluate(base_config(model="wrn-10-2", num_train_steps=1), teachers["wrn"])
        train_and_evaluate(base_config(model=VIT[0], model_kwargs=VIT[1], num_train_steps=1), teachers["vit"])
        results = {}
        for index, (name, config) in enumerate(variants(teachers["wrn"], teachers["vit"]).items()):
            seconds = step_seconds(config, os.path.join(root, f"run{index}"), args.warmup, args.repeats)
            results[name] = common.median(seconds)
    baseline = results["wrn-10-1 plain"]
    result = {"median_step_seconds": results, "ratio_to_plain_wrn_student": {
        name: value / baseline for name, value in results.items()}, **common.machine_facts()}
    common.emit(result, args.json)


if __name__ == "__main__":
    main()

"""A CNN teaches a ViT through token maps and the reverse, through the trainer (tiny runs); a teacher keeps
its own model options (``teacher.model_kwargs``)."""
import jax.numpy as jnp
import pytest

from at_jax.experiments.plan import as_teacher
from at_jax.training import train_and_evaluate
from trainer_utils import metrics_records, tiny_config


def vit_config(**overrides):
    config = tiny_config(**overrides)
    config.model, config.model_kwargs = "vit-ti/4", {"depth": 2}
    return config


def test_a_teacher_keeps_its_own_model_options():
    config = vit_config()
    config.teacher.model = "wrn-10-1"
    assert dict(as_teacher(config).model_kwargs) == {}
    config = tiny_config()
    config.teacher.model, config.teacher.model_kwargs = "vit-ti/4", {"depth": 2}
    teacher = as_teacher(config)
    assert teacher.model == "vit-ti/4" and dict(teacher.model_kwargs) == {"depth": 2}


@pytest.mark.slow
def test_cnn_teaches_vit_and_vit_teaches_cnn_through_token_maps(tmp_path, teacher_dir):
    """ViT student (2 blocks, default features = both blocks' tokens on the 4x4 grid) with the WRN teacher's
    last two groups; then that ViT, trained plain, as the teacher of a WRN student."""
    summary = train_and_evaluate(vit_config(**{"loss.at_beta": 1e3, "teacher.workdir": teacher_dir,
                                               "num_train_steps": 4}), str(tmp_path / "vit_student"))
    records = [record for record in metrics_records(tmp_path / "vit_student") if "train/at" in record]
    assert records and all(record["train/at/0"] > 0 and record["train/at/1"] > 0 for record in records)
    assert jnp.isfinite(summary["eval_loss"])
    train_and_evaluate(vit_config(num_train_steps=4), str(tmp_path / "vit_teacher"))
    config = tiny_config(**{"loss.at_beta": 1e3, "teacher.workdir": str(tmp_path / "vit_teacher"),
                            "teacher.model": "vit-ti/4", "num_train_steps": 4})
    train_and_evaluate(config, str(tmp_path / "cnn_student"))
    records = [record for record in metrics_records(tmp_path / "cnn_student") if "train/at" in record]
    assert records and all(record["train/at/0"] > 0 and record["train/at/1"] > 0 for record in records)


def test_a_teacher_trained_here_takes_its_own_optimizer_keys():
    import os  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel
    import ml_collections  # pylint: disable=import-outside-toplevel
    from at_jax.errors import ConfigError  # pylint: disable=import-outside-toplevel
    from trainer_utils import REPO  # pylint: disable=import-outside-toplevel

    sys.path.insert(0, os.path.join(REPO, "configs"))
    try:
        import cross_architecture  # pylint: disable=import-outside-toplevel
    finally:
        sys.path.pop(0)
    to_cnn = cross_architecture.get_config("direction=vit_to_cnn")
    teacher = as_teacher(ml_collections.ConfigDict(to_cnn.to_dict()))
    assert (to_cnn.optimizer.name, teacher.optimizer.name, teacher.optimizer.learning_rate) == ("sgd", "adamw", 1e-3)
    to_vit = cross_architecture.get_config("direction=cnn_to_vit")
    teacher = as_teacher(ml_collections.ConfigDict(to_vit.to_dict()))
    assert (to_vit.optimizer.name, teacher.optimizer.name, teacher.optimizer.schedule) == ("adamw", "sgd", "step")
    config = tiny_config()
    config.teacher.optimizer = ml_collections.ConfigDict({"learning_rte": 0.1})
    with pytest.raises(ConfigError, match="teacher.optimizer.learning_rte"):
        as_teacher(config)

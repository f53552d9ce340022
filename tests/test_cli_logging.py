"""``--verbosity`` works; by default at_jax's own messages (resume, teacher) show, other libraries' INFO not."""
import glob
import logging as python_logging
import os
import re

import pytest

from at_jax import cli
from trainer_utils import TINY_CONFIG, run_cli

OWN_FILES = {os.path.basename(path) for path in glob.glob(os.path.join(cli.PACKAGE_DIR, "**", "*.py"),
                                                         recursive=True)}
ARGS = [f"--config={TINY_CONFIG}", "--config.checkpoint_every_steps=2", "--config.log_every_steps=2"]


def info_sources(stderr: str) -> set[str]:
    """The files that logged at INFO (absl lines ``I1129 18:50:54.4 123 loop.py:108] ...``)."""
    return {match.group(1) for match in re.finditer(r"^I\d{4} \S+ +\d+ ([\w.]+):\d+\]", stderr, re.M)}


@pytest.mark.slow
def test_resume_and_teacher_messages_show_by_default_and_verbosity_works(tmp_path, teacher_dir):
    chatty = run_cli([f"--workdir={tmp_path / 'run'}", *ARGS, "--config.num_train_steps=2", "--verbosity=0"])
    assert chatty.returncode == 0, chatty.stderr[-2000:]
    assert not info_sources(chatty.stderr) <= OWN_FILES  # --verbosity=0: every library's INFO lines
    resumed = run_cli([f"--workdir={tmp_path / 'run'}", *ARGS, "--config.num_train_steps=4",
                       "--config.loss.at_beta=1.0", f"--config.teacher.workdir={teacher_dir}"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed 1 run(s) from step 2" in resumed.stderr
    assert f"teacher: wrn-10-1 from {teacher_dir}" in resumed.stderr
    assert info_sources(resumed.stderr) <= OWN_FILES  # by default: at_jax's own, orbax's INFO lines quiet


def test_default_filter_passes_own_info_and_everyone_s_warnings():
    own = python_logging.LogRecord("absl", python_logging.INFO,
                                   cli.PACKAGE_DIR + "/training/loop.py", 1, "resumed", None, None)
    other_info = python_logging.LogRecord("absl", python_logging.INFO, "/site-packages/orbax/x.py", 1, "m", None,
                                          None)
    other_warning = python_logging.LogRecord("absl", python_logging.WARNING, "/site-packages/orbax/x.py", 1, "m",
                                             None, None)
    keep = cli._OwnInfoOnly().filter  # pylint: disable=protected-access
    assert keep(own) and not keep(other_info) and keep(other_warning)


def test_expected_orbax_warnings_are_quiet_by_default_others_not():
    keep = cli._OwnInfoOnly().filter  # pylint: disable=protected-access
    for text in cli.EXPECTED_WARNINGS:
        record = python_logging.LogRecord("absl", python_logging.WARNING, "/site-packages/orbax/cm.py", 1,
                                          f"x {text} y", None, None)
        assert not keep(record)
    surprising = python_logging.LogRecord("absl", python_logging.WARNING, "/site-packages/orbax/cm.py", 1,
                                          "disk is full", None, None)
    assert keep(surprising)

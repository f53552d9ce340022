"""Teacher, then students: the embedded default's one-command comparison.

``teacher_then_students(config, workdir)`` trains ``config.teacher.model`` without transfer terms in
``workdir/teacher`` (or uses the finished run ``config.teacher.workdir`` names, training none), then
``config.model`` without transfer terms in ``workdir/student`` and with the config's transfer terms in
``workdir/student_<method>`` using that teacher. Each run resumes on its own.
"""
from __future__ import annotations


import ml_collections
from absl import logging

from at_jax.experiments.plan import as_teacher, without_transfer_terms
from at_jax.losses import method_name
from at_jax.run_files import SUMMARY_FILE, absolute, as_path, read_json
from at_jax.training import train_and_evaluate
from at_jax.training.checkpoint import load_run
from at_jax.training.multi_run import single_run
from at_jax.training.workdir import check_writable


def without_transfer(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The config without transfer terms; a sweep of a loss weight becomes one run (seed jobs stay)."""
    plain = ml_collections.ConfigDict(config.to_dict())
    without_transfer_terms(plain.loss)
    plain.pipeline = ""
    plain.teacher.workdir = ""
    return single_run(plain) if plain.get("parallel_sweep") else plain


def given_teacher(teacher_workdir: str) -> dict:
    """The summary of the finished teacher run a user named (refused in one line if it cannot be loaded)."""
    run = load_run(teacher_workdir, role="teacher")
    logging.info("using the teacher in %s (%s, step %d); not training one", teacher_workdir,
                 run.config.get("model"), run.step)
    return read_json(as_path(teacher_workdir) / SUMMARY_FILE) or {
        "model": run.config.get("model"), "accuracy": None, "step": run.step}


def teacher_then_students(config: ml_collections.ConfigDict, workdir: str) -> dict[str, dict]:
    """Runs (or reuses) the teacher, the plain student and the transfer student; their summaries by name.

    With ``config.parallel_runs`` the teacher is one run; the plain student is a seed job like the
    transfer student's (one run when the transfer student sweeps a loss weight)."""
    check_writable(workdir)  # the workdir itself, before its teacher/ and student/ folders are checked
    summaries = {}
    teacher_dir = config.teacher.workdir
    if teacher_dir:
        summaries["teacher"] = given_teacher(teacher_dir)
    else:
        teacher_config = as_teacher(single_run(without_transfer(config)))  # one teacher for all students
        teacher_dir = str(absolute(workdir) / "teacher")  # absolute: the students' config.json finds it from anywhere
        summaries["teacher"] = train_and_evaluate(teacher_config, teacher_dir)
    summaries["student"] = train_and_evaluate(without_transfer(config), str(as_path(workdir) / "student"))
    method = method_name(config.loss)
    if method != "none":
        transfer_config = ml_collections.ConfigDict(config.to_dict())
        transfer_config.pipeline = ""
        transfer_config.teacher.workdir = teacher_dir
        name = f"student_{method.replace('+', '_')}"
        summaries[name] = train_and_evaluate(transfer_config, str(as_path(workdir) / name))
    return summaries


def format_job_statistics(summary: dict) -> str:
    """One line for a parallel job: median (min-max) test accuracy over its finished runs."""
    if summary.get("accuracy") is None:
        return f"no run of the {summary.get('parallel_runs')} finished"
    return (f"median test accuracy {100 * summary['accuracy']:.2f}% (min {100 * summary['accuracy_min']:.2f}%, "
            f"max {100 * summary['accuracy_max']:.2f}%) over {summary['finished_runs']} of "
            f"{summary['parallel_runs']} runs")


def format_summaries(summaries: dict[str, dict]) -> str:
    """A small plain-text table of test accuracies (a parallel job: one line per run)."""
    rows = {}
    for name, summary in summaries.items():
        if "runs" in summary:
            rows.update({f"{name}/{run}": run_summary for run, run_summary in summary["runs"].items()})
        else:
            rows[name] = summary
    width = max([22] + [len(name) for name in rows])
    lines = [f"{'run':<{width}} {'model':<12} {'test accuracy':>13} {'train time':>10}"]
    for name, summary in rows.items():
        accuracy = summary.get("accuracy")
        accuracy_text = "n/a" if accuracy is None else f"{100 * accuracy:.2f}%"
        lines.append(f"{name:<{width}} {summary.get('model', ''):<12} {accuracy_text:>13} "
                     f"{summary.get('train_seconds', 0):>9.0f}s")
    return "\n".join(lines)

"""Experiments: plans of teacher and student runs over methods and seeds, running them, the results table.

- :mod:`~at_jax.experiments.plan`: the experiment config, the planned runs, consistency with what is on disk.
- :mod:`~at_jax.experiments.run`: ``run_experiment(config, workdir)``.
- :mod:`~at_jax.experiments.report`: results.json / results.md in the paper's Table 1 form.
- :mod:`~at_jax.experiments.teacher_students`: the embedded default's teacher -> student -> student + AT.
"""

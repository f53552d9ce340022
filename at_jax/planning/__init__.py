"""Planning a pod run on a CPU machine: the run compiled for a TPU topology it does not have.

XLA's TPU compiler runs without TPUs (``jax[tpu]``: libtpu). :mod:`~at_jax.planning.topology` describes a
topology's devices and their memory, :mod:`~at_jax.planning.abstract_job` builds the trainer's job on them from
shapes alone (no parameter allocated, no data read), :mod:`~at_jax.planning.compiled` compiles its train and eval
steps and reads XLA's figures (memory per device, FLOPs, bytes, collectives), and
:mod:`~at_jax.planning.max_batch` finds the largest per-chip batch that fits. The command is
``python -m at_jax.compile_for``.
"""

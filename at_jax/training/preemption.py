"""Preemption: SIGTERM (SLURM, TPU maintenance, Kubernetes) saves a checkpoint and ends the job cleanly.

On SIGTERM the job does not die where it stands. Every process agrees on a step, trains on to the next log
step (so that the resumed run logs exactly what an uninterrupted one logs), saves a checkpoint there, waits
for it to be on disk and raises :class:`~at_jax.errors.Preempted`; the entry points then exit with
:data:`PREEMPTED_EXIT_CODE` (143 = 128 + SIGTERM, what schedulers expect of a job that stopped on SIGTERM).
Re-running the same command resumes from that checkpoint. A second SIGTERM while saving is ignored; a SIGKILL
then leaves the previous checkpoints whole (orbax renames a step's directory only when it is complete).

One process: a SIGTERM handler sets a flag. Several processes (``jax.distributed``): JAX's preemption
service (the coordination service's notifier, on by default) learns of a SIGTERM on any host and
``multihost_utils.reached_preemption_sync_point`` names the same safe call on every host.
"""
from __future__ import annotations

import signal
import threading

import jax
from absl import logging

PREEMPTED_EXIT_CODE = 143


class PreemptionWatch:
    """Answers "was the job asked to stop?" once per compiled call, identically on every process."""

    def __init__(self):
        self.requested_flag = False
        self._previous = None
        self._distributed = jax.process_count() > 1
        if not self._distributed and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame) -> None:
        del signum, frame
        if not self.requested_flag:
            logging.warning("SIGTERM: saving a checkpoint at the next log step, then stopping")
        self.requested_flag = True

    def requested(self, call_index: int) -> bool:
        """True from the call at which every process has learnt of the request (call indices count the
        compiled calls of this process, the same sequence on every process)."""
        if self._distributed and not self.requested_flag:
            from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
            self.requested_flag = bool(multihost_utils.reached_preemption_sync_point(call_index))
        return self.requested_flag

    def close(self) -> None:
        """Gives SIGTERM back to the handler that was there before."""
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

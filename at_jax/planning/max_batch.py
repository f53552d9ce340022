"""The largest per-chip batch whose train and eval steps fit a topology's memory, found by compiling.

Memory grows about linearly with the batch, so each probe after the first two is the batch the line through the
nearest fitting and failing probes predicts (rounded down to ``granularity``), else the midpoint; every answer
is a compiled program, not the prediction. The search ends when the largest fitting batch and the smallest
failing one are ``granularity`` apart (or the training set, or ``limit``, bounds it).

Near the limit memory is not monotone in the batch: XLA's TPU compiler rematerialises differently per program,
and ImageNet R34 -> R18 on v5p was refused at 16,512 per chip (96.09 GiB) while 17,984 fits (89.72 GiB,
BENCHMARKS.md). The answer is a batch that compiles and fits; smaller batches are not guaranteed to.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

#: Per-chip batches above this are not tried.
LIMIT = 1 << 16


@dataclasses.dataclass
class Search:
    """Probes so far: per-chip batch -> bytes needed per device (max of train and eval), None where the compiler
    failed on it for a reason of its own (counted as not fitting, left out of the predictions)."""
    capacity: int
    granularity: int
    upper: int
    needed: dict = dataclasses.field(default_factory=dict)

    @property
    def largest_fitting(self) -> int:
        return max((batch for batch, need in self.needed.items() if need is not None and need <= self.capacity),
                   default=0)

    @property
    def smallest_failing(self) -> int:
        return min((batch for batch, need in self.needed.items() if need is None or need > self.capacity),
                   default=self.upper + 1)

    @property
    def untried(self) -> list[int]:
        """[first, last] batch between the answer and the smallest refused one (or ``upper``) where the search
        stopped before they were ``granularity`` apart; [] when it finished."""
        if self.done():
            return []
        refused = self.smallest_failing
        last = self._round(self.upper) if refused > self.upper else refused - self.granularity
        return [self.largest_fitting + self.granularity, last]

    def done(self) -> bool:
        return self.smallest_failing - self.largest_fitting <= self.granularity or (
            self.largest_fitting >= self.upper)

    def next_probe(self) -> int:
        low, high = self.largest_fitting, self.smallest_failing
        if high > self.upper:                      # no failure yet: extrapolate, at least double
            guess = self._predicted() or 2 * max(low, self.granularity)
            return self._round(min(self.upper, max(guess, 2 * low)))
        guess = self._predicted()
        if guess is None or not low < guess < high:
            guess = (low + high) // 2
        probe = self._round(guess)
        return probe if low < probe < high else self._round(low + self.granularity)

    def _round(self, batch: int) -> int:
        return max(self.granularity, batch // self.granularity * self.granularity)

    def _predicted(self) -> int | None:
        """The batch where the line through the two probes nearest the capacity meets it."""
        measured = [(batch, need) for batch, need in self.needed.items() if need is not None]
        points = sorted(measured, key=lambda item: abs(item[1] - self.capacity))[:2]
        if len(points) < 2 or points[0][0] == points[1][0]:
            return None
        (batch_a, need_a), (batch_b, need_b) = points
        slope = (need_b - need_a) / (batch_b - batch_a)
        if slope <= 0:
            return None
        return int(batch_a + (self.capacity - need_a) / slope)


def find_max_batch(needed_at: Callable[[int], int | None], capacity: int, *, start: int, granularity: int = 8,
                   upper: int = LIMIT, max_probes: int = 16) -> Search:
    """Searches per-chip batches with ``needed_at(batch) -> bytes per device`` (a compile); the answer is
    ``search.largest_fitting`` (0: not even ``granularity`` fits)."""
    search = Search(capacity, granularity, max(granularity, upper))
    probe = max(granularity, start // granularity * granularity)
    for _ in range(max_probes):
        search.needed[probe] = needed_at(probe)
        if search.done() or (search.largest_fitting == 0 and probe == granularity):
            break
        if search.largest_fitting == 0:             # the first probe failed: halve down to the granularity
            probe = max(granularity, probe // 2 // granularity * granularity)
            continue
        probe = search.next_probe()
        if probe in search.needed:
            break
    return search

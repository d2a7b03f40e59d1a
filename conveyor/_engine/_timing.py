"""Call-duration percentiles in bounded memory: a fixed-size reservoir per stage.

A :class:`Reservoir` keeps a uniform random sample of at most ``size``
durations (Vitter's algorithm R) and keeps it sorted, so that a snapshot
reads its percentiles by index without sorting. :class:`CallTimer` is the
built-in instrument that feeds one reservoir per stage of a run; it is
attached by ``Pipeline.with_call_timing()``.
"""

from __future__ import annotations

import math
import random
from bisect import insort

from ..instrumentation import CallInfo, Instrument, RunInfo
from ..statistics import CallDurations

__all__ = ["DEFAULT_SAMPLE_SIZE", "CallTimer", "Reservoir"]

#: Durations kept per stage: percentiles are exact up to this many calls.
DEFAULT_SAMPLE_SIZE = 1024


class Reservoir:
    """A uniform sample of at most ``size`` values, kept sorted."""

    __slots__ = ("_random", "_samples", "count", "size")

    def __init__(self, size: int = DEFAULT_SAMPLE_SIZE, seed: int = 0) -> None:
        self.size = size
        self.count = 0  # values offered so far
        self._samples: list[float] = []  # sorted
        self._random = random.Random(seed)

    def add(self, value: float) -> None:
        """Offer ``value``: kept with probability ``size / count``."""
        self.count += 1
        samples = self._samples
        if len(samples) < self.size:
            insort(samples, value)
            return
        slot = self._random.randrange(self.count)
        if slot < self.size:
            # The slot is a uniformly chosen member of the sample; which one
            # does not matter, so the sorted list's index serves as well.
            del samples[slot]
            insort(samples, value)

    def percentile(self, q: float) -> float:
        """The nearest-rank ``q`` percentile (0 < q <= 100) of the sample."""
        samples = self._samples
        rank = math.ceil(q / 100 * len(samples))
        return samples[max(rank, 1) - 1]

    def durations(self) -> CallDurations | None:
        """The percentiles so far, or None before the first value."""
        samples = self._samples
        n = len(samples)
        if not n:
            return None
        # Nearest rank, inlined (see percentile): a snapshot reads every stage.
        return CallDurations(
            self.count,
            self.size,
            samples[max(math.ceil(0.50 * n), 1) - 1],
            samples[max(math.ceil(0.95 * n), 1) - 1],
            samples[max(math.ceil(0.99 * n), 1) - 1],
        )


class CallTimer(Instrument):
    """Records the duration of every call that returned or raised, per stage."""

    __slots__ = ("size",)

    def __init__(self, size: int = DEFAULT_SAMPLE_SIZE) -> None:
        self.size = size

    def run_started(self, run: RunInfo) -> None:
        run.state[self] = [Reservoir(self.size, seed=index) for index in range(len(run.stages))]

    def reservoirs(self, run: RunInfo) -> list[Reservoir] | None:
        """The run's reservoirs by stage index (None before ``run_started``)."""
        reservoirs: list[Reservoir] | None = run.state.get(self)
        return reservoirs

    def call_finished(self, call: CallInfo) -> None:
        assert call.duration is not None
        call.run.state[self][call.stage_index].add(call.duration)

    def call_failed(self, call: CallInfo) -> None:
        if not call.cancelled:
            assert call.duration is not None
            call.run.state[self][call.stage_index].add(call.duration)

"""Flow control: the admission window and concurrency slots.

The window is the one rule that bounds memory: whoever feeds a segment of the
pipeline (the source feeder, or a batch stage feeding what follows it) admits
an envelope only while fewer than ``size`` are in flight, and whoever ends the
segment (the consumer, or the next batch stage) gives the token back. A slow
consumer therefore stops the source; every buffer in between is bounded.

Slots cap how many calls run at once, for one stage (``concurrency_limit``)
or for a whole run (``max_parallelism``).
"""

from __future__ import annotations

import anyio

__all__ = ["Slots", "Window"]


class Window:
    """At most ``size`` envelopes admitted and not yet given back.

    A waiting feeder is woken once a quarter of the window is free again, so
    that it admits items in chunks rather than one by one.
    """

    __slots__ = ("_room", "_wake_at", "admitted", "in_flight", "size")

    def __init__(self, size: int) -> None:
        assert size >= 1
        self.size = size
        self.in_flight = 0
        self.admitted = 0  # in all
        self._wake_at = size - max(1, size // 4)
        self._room: anyio.Event | None = None  # set when a waiting feeder may go on

    def free(self) -> int:
        """How many envelopes may be admitted now."""
        return self.size - self.in_flight

    def admit(self, count: int) -> None:
        self.in_flight += count
        self.admitted += count

    def give_back(self, count: int) -> None:
        self.in_flight -= count
        room = self._room
        if room is not None and self.in_flight <= self._wake_at:
            self._room = None
            room.set()

    async def wait_for_room(self) -> None:
        """Return once at least one envelope may be admitted."""
        if self.in_flight >= self.size:
            room = self._room = anyio.Event()
            await room.wait()


class Slots:
    """A counter of calls in flight with a wake-up for one waiter at a time.

    Cheaper than a semaphore on the hot path: taking a free slot is an
    integer increment and never checkpoints.
    """

    __slots__ = ("_freed", "limit", "used")

    def __init__(self, limit: int) -> None:
        assert limit >= 1
        self.limit = limit
        self.used = 0
        self._freed: anyio.Event | None = None

    def full(self) -> bool:
        return self.used >= self.limit

    def take(self) -> None:
        self.used += 1

    def give_back(self) -> None:
        self.used -= 1
        freed = self._freed
        if freed is not None:
            self._freed = None
            freed.set()

    async def wait_until_free(self) -> None:
        while self.used >= self.limit:
            freed = self._freed
            if freed is None:
                freed = self._freed = anyio.Event()
            await freed.wait()

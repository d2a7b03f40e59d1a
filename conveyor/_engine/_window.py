"""Flow control: the admission window and concurrency slots.

The window is the one rule that bounds memory: whoever feeds a segment of the
pipeline (the source feeder, or a batch stage feeding what follows it) admits
an item only while fewer than ``size`` are in flight, and whoever ends the
segment (the consumer, or the next batch stage) gives the token back. A slow
consumer therefore stops the source; every buffer in between is bounded.

A call that expands its value into several values may have at most
``EXPANSION_ALLOWANCE`` of them passed on and not yet released at the
segment's end (see ``_expand``): a generator is advanced only while its own
values drain, so a stalled consumer stops it, and the values in flight stay
below ``size + EXPANSION_ALLOWANCE * (calls in flight at once)``. Expansions
do not compete with items for the window: items waiting for a stage can
never starve the expansion they wait behind.

Two rules keep ordered runs live when the consumer is waiting and a stage
is *stuck* (every slot held by an expansion that waits for its values to
drain, and more work queued behind them). If the queued call is the one the
release waits for (everything before it is out), it starts beyond the
stage's limit: the expansions holding the slots are later in the order, so
nothing else could go on, and they stay paused within their allowance. Any
other queued call waits, and the paused expansions go on past their
allowance until a slot frees. Without these rules an earlier item queued
behind later items' paused expansions would wait forever.

Slots cap how many calls run at once, for one stage (``concurrency_limit``)
or for a whole run (``max_parallelism``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import anyio

from ._envelope import Chunk
from ._reorder import Reorder

__all__ = ["EXPANSION_ALLOWANCE", "Slots", "Window"]

#: Values one expanding call may have passed on and not yet released.
EXPANSION_ALLOWANCE = 512


class _Stage(Protocol):
    def unstick(self) -> None: ...


class Window:
    """At most ``size`` envelopes admitted and not yet given back.

    A waiting feeder is woken once a quarter of the window is free again, so
    that it admits items in chunks rather than one by one.
    """

    __slots__ = (
        "_room",
        "_wake_at",
        "admitted",
        "expansions",
        "hungry",
        "in_flight",
        "order",
        "size",
        "stages",
    )

    def __init__(self, size: int) -> None:
        assert size >= 1
        self.size = size
        self.in_flight = 0
        self.admitted = 0  # in all
        self._wake_at = size - max(1, size // 4)
        self._room: anyio.Event | None = None  # set when a waiting feeder may go on
        #: {node path: the open expansion that makes its values} (see ``_expand``)
        self.expansions: dict[tuple[int, ...], Any] = {}
        #: The single stages of the segment, told when the consumer waits.
        self.stages: list[_Stage] = []
        #: True while the segment's end waits for something to arrive.
        self.hungry = False
        #: The segment end's reorder step in ordered mode (see ``waits_for``).
        self.order: Reorder | None = None

    def waits_for(self, path: tuple[int, ...]) -> bool:
        """True when the segment's end waits for position ``path`` (ordered mode)."""
        order = self.order
        return order is not None and order.waits_for(path)

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

    def released(self, chunk: Chunk) -> None:
        """``chunk`` of an expansion's node reached the segment's end: its values drained."""
        path = chunk.path
        expansion = self.expansions.get(path)
        if expansion is not None:
            expansion.drained(len(chunk.entries))
        if chunk.end and len(path) > 1:  # the value that expanded is done as well
            parent = self.expansions.get(path[:-1])
            if parent is not None:
                parent.drained(1)

    def release(self, due: Sequence[Chunk]) -> None:
        """``due`` reached the segment's end: give back their tokens and allowances."""
        tokens = 0
        for chunk in due:
            tokens += chunk.weight
            if chunk.path:
                self.released(chunk)
        self.give_back(tokens)

    def starving(self) -> None:
        """The segment's end is about to wait: a stuck stage must go on (see above)."""
        self.hungry = True
        if self.expansions:  # (only expansions can be stuck)
            for stage in self.stages:
                stage.unstick()

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

    async def wait_until_free(self, count: int = 1) -> None:
        """Return once ``count`` slots are free at the same time (taking none)."""
        while self.used > self.limit - count:
            freed = self._freed
            if freed is None:
                freed = self._freed = anyio.Event()
            await freed.wait()

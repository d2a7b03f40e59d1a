"""Snapshots of a running pipeline, for monitoring and debugging.

Like trio's and anyio's ``statistics()`` methods: a frozen value describing
the run at the moment it was taken, never a live view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["RunStatistics", "StageStatistics"]


@dataclass(frozen=True)
class StageStatistics:
    """One stage of a run.

    ``name``: the task's name. ``kind``: ``"single"`` or ``"batch"``.

    ``items_received``: input entries (items) the stage has taken so far.
    ``calls_waiting``: calls suspended right now (awaiting I/O, a sleep...).
    ``concurrency_limit``: the most calls it runs at once (1 for batch stages).
    ``input_buffered``: chunks waiting in its input stream.
    """

    name: str
    kind: Literal["single", "batch"]
    items_received: int
    calls_waiting: int
    concurrency_limit: int
    input_buffered: int


@dataclass(frozen=True)
class RunStatistics:
    """One run.

    ``items_read``: input items taken from the source so far.
    ``items_in_flight``: read and not yet released to the consumer (bounded
    by ``window``) — the admission window of the first segment.
    ``results_released``: results handed to the consumer (or ready for it).
    ``held_for_order``: finished chunks the ordered output is holding back
    until everything before them is done.
    ``failures``: items or batches dropped by a skip policy so far.
    ``stages``: one :class:`StageStatistics` per stage, in pipeline order.
    """

    items_read: int
    items_in_flight: int
    window: int
    results_released: int
    held_for_order: int
    failures: int
    stages: tuple[StageStatistics, ...]

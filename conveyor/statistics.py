"""Snapshots of a running pipeline, for monitoring and debugging.

Like trio's and anyio's ``statistics()`` methods: a frozen value describing
the run at the moment it was taken, never a live view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["CallDurations", "RunStatistics", "StageStatistics"]


@dataclass(frozen=True)
class CallDurations:
    """Call-duration percentiles of one stage, in seconds (opt-in: see
    ``Pipeline.with_call_timing``).

    ``count``: calls timed so far. ``p50``, ``p95``, ``p99``: nearest-rank
    percentiles of a uniform random sample of at most ``sample_size`` of those
    calls (a fixed-size reservoir, Vitter's algorithm R), so memory stays
    bounded on endless runs; exact while ``count <= sample_size``.
    """

    count: int
    sample_size: int
    p50: float
    p95: float
    p99: float

    def __init__(self, count: int, sample_size: int, p50: float, p95: float, p99: float) -> None:
        # Fast construction, as for StageStatistics: snapshots build one per stage.
        self.__dict__.update(count=count, sample_size=sample_size, p50=p50, p95=p95, p99=p99)


@dataclass(frozen=True)
class StageStatistics:
    """One stage of a run.

    ``name``: the task's name. ``kind``: ``"single"`` or ``"batch"``.

    ``items_received``: values the stage has taken in so far (for the first
    stage these are the input items; after an expanding stage, each value of
    an expansion counts), dropped places included.
    ``calls_waiting``: calls in flight right now that are suspended (awaiting
    I/O, a sleep, or, for a generator, paused until its values drain).
    ``concurrency_limit``: the most calls it runs at once (for a batch stage,
    batch calls: its ``concurrency_limit``, 1 by default).
    ``input_buffered``: chunks (groups of values) waiting in its input stream.
    ``calls_started`` / ``calls_finished`` / ``calls_failed`` / ``calls_retried``:
    calls (invocations of the function; each retry is one) that started,
    returned, raised, and were followed by a retry. A call cancelled by the
    run's stop counts as started only.
    ``items_per_second``: ``items_received`` over the run's ``elapsed`` time.
    ``call_durations``: percentiles of call durations when the pipeline asked
    for them (``with_call_timing()``), else None.
    """

    name: str
    kind: Literal["single", "batch"]
    items_received: int
    calls_waiting: int
    concurrency_limit: int
    input_buffered: int
    calls_started: int = 0
    calls_finished: int = 0
    calls_failed: int = 0
    calls_retried: int = 0
    items_per_second: float = 0.0
    call_durations: CallDurations | None = None

    def __init__(
        self,
        name: str,
        kind: Literal["single", "batch"],
        items_received: int,
        calls_waiting: int,
        concurrency_limit: int,
        input_buffered: int,
        calls_started: int = 0,
        calls_finished: int = 0,
        calls_failed: int = 0,
        calls_retried: int = 0,
        items_per_second: float = 0.0,
        call_durations: CallDurations | None = None,
    ) -> None:
        # One dict update instead of a frozen dataclass's object.__setattr__
        # per field: a snapshot of a 10-stage run builds ten of these, and
        # must take under 100 µs (issue #13).
        self.__dict__.update(
            name=name,
            kind=kind,
            items_received=items_received,
            calls_waiting=calls_waiting,
            concurrency_limit=concurrency_limit,
            input_buffered=input_buffered,
            calls_started=calls_started,
            calls_finished=calls_finished,
            calls_failed=calls_failed,
            calls_retried=calls_retried,
            items_per_second=items_per_second,
            call_durations=call_durations,
        )


@dataclass(frozen=True)
class RunStatistics:
    """One run.

    ``items_read``: input items taken from the source so far.
    ``items_in_flight``: read and not yet released to the consumer (bounded
    by ``window``) — the admission window of the first segment.
    ``results_released``: results handed to the consumer (or ready for it).
    ``held_for_order``: values (not items: an item may expand to several)
    that are finished but wait for an earlier one before they can be
    released, wherever they sit (the reorder step, or the channel in front of
    it); always 0 in as-completed mode.
    ``failures``: items or batches dropped by a skip policy so far.
    ``elapsed``: seconds since the run started (the backend's clock).
    ``stages``: one :class:`StageStatistics` per stage, in pipeline order.
    """

    items_read: int
    items_in_flight: int
    window: int
    results_released: int
    held_for_order: int
    failures: int
    stages: tuple[StageStatistics, ...]
    elapsed: float = 0.0

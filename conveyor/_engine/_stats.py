"""A stage's statistics as users see them: the stage runner's snapshot plus
the call counters, the throughput and, when asked for, call-duration
percentiles."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..statistics import StageStatistics

if TYPE_CHECKING:
    from ._batch import BatchStage
    from ._offload import OffloadStage
    from ._single import SingleStage
    from ._timing import Reservoir

__all__ = ["stage_statistics"]


def stage_statistics(
    stage: SingleStage | BatchStage | OffloadStage,
    elapsed: float,
    reservoir: Reservoir | None,
) -> StageStatistics:
    """``stage``'s snapshot, ``elapsed`` seconds into the run."""
    snapshot = stage.statistics()
    caller = stage.caller
    # The snapshot is new and ours alone: fill in the rest in place rather
    # than build a second one (a snapshot of a 10-stage run must stay fast).
    snapshot.__dict__.update(
        calls_started=caller.calls_started,
        calls_finished=caller.calls_finished,
        calls_failed=caller.calls_failed,
        calls_retried=caller.calls_retried,
        items_per_second=snapshot.items_received / elapsed if elapsed > 0 else 0.0,
        call_durations=reservoir.durations() if reservoir is not None else None,
    )
    return snapshot

"""statistics(): a frozen snapshot of a run and of each stage."""

from __future__ import annotations

import dataclasses

import anyio
import pytest

from conveyor import RunStatistics, StageStatistics, batch_task, single_task

from .conftest import virtual_clock

pytestmark = pytest.mark.anyio


@virtual_clock
async def test_statistics_describe_a_running_pipeline() -> None:
    @single_task(concurrency_limit=4)
    async def slow(x: int) -> int:
        await anyio.sleep(1)
        return x

    @batch_task(max_size=5, on_error="skip_batch")
    def total(batch: list[int]) -> int:
        if 7 in batch:
            raise ValueError("seven")
        return sum(batch)

    async with (slow | total).open(range(20)) as results:
        assert await results.__anext__() == 10
        stats = results.statistics()
        assert isinstance(stats, RunStatistics)
        assert stats.items_read == 20
        assert stats.window == 256
        assert stats.results_released == 1
        assert stats.failures == 0  # the batch holding 7 has not run yet
        assert [(s.name, s.kind, s.concurrency_limit) for s in stats.stages] == [
            ("slow", "single", 4),
            ("total", "batch", 1),
        ]
        assert 0 < stats.stages[0].calls_waiting <= 4
        assert all(isinstance(s, StageStatistics) for s in stats.stages)
        rest = [x async for x in results]
    assert rest == [60, 85]
    final = results.statistics()
    assert final.results_released == 3
    assert final.items_in_flight == 0
    assert final.failures == 1
    assert final.stages[0].items_received == 20
    with pytest.raises(dataclasses.FrozenInstanceError):
        final.items_read = 0  # type: ignore[misc]

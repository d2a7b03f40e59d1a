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


async def test_plain_stream_offers_statistics_once_started() -> None:
    @single_task
    def double(x: int) -> int:
        return 2 * x

    stream = double(range(10))
    with pytest.raises(RuntimeError, match="not started"):
        stream.statistics()
    assert [x async for x in stream] == [2 * x for x in range(10)]
    final = stream.statistics()
    assert (final.items_read, final.results_released, final.items_in_flight) == (10, 10, 0)


async def test_chunk_size_bounds_how_many_results_travel_together() -> None:
    @single_task
    def default(x: int) -> int:
        return x

    @single_task(chunk_size=1)
    def one_by_one(x: int) -> int:
        return x

    for task, released_at_first in ((default, 128), (one_by_one, 1)):
        async with task.open(range(300)) as results:
            assert await results.__anext__() == 0
            assert results.statistics().results_released == released_at_first
            assert [x async for x in results] == list(range(1, 300))

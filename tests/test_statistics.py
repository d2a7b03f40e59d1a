"""statistics(): a frozen snapshot of a run and of each stage."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

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

    for task, most_at_first in ((default, 128), (one_by_one, 1)):
        async with task.open(range(300)) as results:
            assert await results.__anext__() == 0
            # At most a chunk (fewer when a time slice ends first, on a busy machine).
            assert 1 <= results.statistics().results_released <= most_at_first
            assert [x async for x in results] == list(range(1, 300))


async def test_statistics_count_calls_started_finished_failed_and_retried() -> None:
    tried: set[int] = set()

    @single_task(retry_attempts=3, retry_delay=0.0, on_error="skip_item")
    def flaky(x: int) -> int:
        if x == 5 or (x % 2 and x not in tried):  # odd items fail once, 5 always
            tried.add(x)
            raise ValueError(x)
        return x

    async with flaky.open(range(10)) as results:
        assert [x async for x in results] == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    stage = results.statistics().stages[0]
    assert (
        stage.calls_started,
        stage.calls_finished,
        stage.calls_failed,
        stage.calls_retried,
    ) == (10 + 4 + 2, 9, 5 + 2, 4 + 2)


def _quick(x: int) -> int:
    return x


async def _no_wait(x: int) -> int:
    return x


async def _waits(x: int) -> int:
    await anyio.sleep(0.01 if x % 3 else 0)
    return x


def _generator(x: int) -> Iterator[int]:
    yield x


def _two_values(x: int) -> list[int]:
    return [x, x]


@virtual_clock
@pytest.mark.parametrize(
    "func",
    [_quick, _no_wait, _waits, _generator, _two_values],
    ids=["sync", "async-no-wait", "async-waits", "generator", "list"],
)
@pytest.mark.parametrize("items", [10, 1000], ids=["few", "many"])
async def test_statistics_count_the_calls_of_a_stage_without_a_policy(
    func: Callable[[int], Any], items: int
) -> None:
    task = single_task(func)
    async with task.open(range(items)) as results:
        released = [x async for x in results]
    assert sorted(set(released)) == list(range(items))
    stage = results.statistics().stages[0]
    calls = (stage.calls_started, stage.calls_finished, stage.calls_failed, stage.calls_retried)
    assert calls == (items, items, 0, 0)


@pytest.mark.parametrize(
    "func", [_quick, _waits, _generator], ids=["sync", "async-waits", "generator"]
)
async def test_statistics_count_the_failed_call_of_a_stage_without_a_policy(
    func: Callable[[int], Any],
) -> None:
    @single_task(concurrency_limit=1)
    def fails_on_seven(x: int) -> Any:
        if x == 7:
            raise ValueError(x)
        return func(x)

    results = fails_on_seven(range(300))
    with pytest.raises(ValueError, match="7"):
        await results.collect()
    stage = results.statistics().stages[0]
    assert (stage.calls_started, stage.calls_failed) == (8, 1)
    assert stage.calls_finished == 7


@virtual_clock
async def test_statistics_give_each_stage_its_throughput() -> None:
    @single_task(concurrency_limit=2)
    async def slow(x: int) -> int:
        await anyio.sleep(1)
        return x

    async with slow.open(range(10)) as results:
        assert len([x async for x in results]) == 10
        stats = results.statistics()
    assert stats.elapsed == 5.0
    assert stats.stages[0].items_per_second == 10 / 5.0


@virtual_clock
async def test_call_timing_gives_duration_percentiles_per_stage() -> None:
    @single_task
    async def wait(tenths: int) -> int:
        await anyio.sleep(tenths / 10)
        return tenths

    @batch_task(max_size=10)
    async def pause(batch: list[int]) -> int:
        await anyio.sleep(2)
        return len(batch)

    pipeline = (wait | pause).with_call_timing()
    async with pipeline.open(range(1, 101)) as results:
        assert [x async for x in results] == [10] * 10
        stages = results.statistics().stages
    waits = stages[0].call_durations
    assert waits is not None
    assert (waits.count, waits.p50, waits.p95, waits.p99) == (100, 5.0, 9.5, 9.9)
    pauses = stages[1].call_durations
    assert pauses is not None
    assert (pauses.count, pauses.p50, pauses.p99) == (10, 2.0, 2.0)


async def test_without_call_timing_there_are_no_percentiles() -> None:
    @single_task
    def same(x: int) -> int:
        return x

    async with same.open(range(3)) as results:
        _ = [x async for x in results]
    assert results.statistics().stages[0].call_durations is None


def test_call_timing_keeps_a_bounded_uniform_sample() -> None:
    from conveyor._engine._timing import Reservoir

    reservoir = Reservoir(size=500)
    for value in range(100_000):
        reservoir.add(value / 100_000)
    durations = reservoir.durations()
    assert durations is not None
    assert durations.count == 100_000
    assert len(reservoir._samples) == 500
    # A uniform sample of 0..1: its percentiles are near the true ones.
    assert abs(durations.p50 - 0.50) < 0.08
    assert abs(durations.p95 - 0.95) < 0.04


@pytest.mark.parametrize(
    ("size", "error"), [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_call_timing_sample_size_must_be_a_positive_int(size: object, error: type) -> None:
    @single_task
    def same(x: int) -> int:
        return x

    with pytest.raises(error, match="sample_size"):
        same.with_call_timing(size)  # type: ignore[arg-type]


@virtual_clock
async def test_held_for_order_counts_finished_values_behind_a_slow_head_item() -> None:
    # The consumer does not read: 99 finished results wait behind item 0,
    # in the channel in front of the reorder step, and the snapshot says so.
    @single_task
    async def slow_head(x: int) -> int:
        await anyio.sleep(10 if x == 0 else 0.01)
        return x

    async with slow_head.open(range(100)) as results:
        await anyio.sleep(1)
        assert results.statistics().held_for_order == 99
        assert [x async for x in results] == list(range(100))
        assert results.statistics().held_for_order == 0


@virtual_clock
@pytest.mark.parametrize("expand", [False, True], ids=["items", "one-item-expanding"])
async def test_held_for_order_leaves_out_values_that_wait_only_for_the_consumer(
    expand: bool,
) -> None:
    # Nothing comes before these values: they wait for the stalled consumer,
    # not for an earlier value.
    @single_task
    def lines(n: int) -> Iterator[int]:
        yield from range(10_000)

    @single_task
    def same(n: int) -> int:
        return n

    task, data = (lines, [1]) if expand else (same, range(1_000))
    async with task.open(data) as results:
        await results.__anext__()
        await anyio.sleep(0.1)
        assert results.statistics().held_for_order == 0


@virtual_clock
async def test_held_for_order_is_zero_in_as_completed_mode() -> None:
    @single_task
    async def slow_head(x: int) -> int:
        await anyio.sleep(10 if x == 0 else 0.01)
        return x

    async with slow_head.with_execution_mode("as_completed").open(range(100)) as results:
        await anyio.sleep(1)
        assert results.statistics().held_for_order == 0


@virtual_clock
async def test_elapsed_stops_when_the_run_ends() -> None:
    @single_task
    async def slow(x: int) -> int:
        await anyio.sleep(2)
        return x

    async with slow.open([1]) as results:
        assert [x async for x in results] == [1]
    await anyio.sleep(10)
    assert results.statistics().elapsed == 2.0

"""No orphans: every way out of a run stops and awaits all of its workers.

Structured runs (``open()``) guarantee it when the block exits; plain
iteration guarantees it when the loop ends, fails, is cancelled, is closed,
and (promptly, but after the fact) when the iterator is merely dropped.
"""

from __future__ import annotations

import gc

import anyio
import anyio.lowlevel
import pytest

from conveyor import single_task

from .helpers import Tracker, live_tasks, numbers, settle_tasks

pytestmark = pytest.mark.anyio


def slow_stage(tracker: Tracker):  # type: ignore[no-untyped-def]
    @single_task
    async def slow(x: int) -> int:
        tracker.enter(x)
        try:
            await anyio.sleep(0 if x < 3 else 3600)
            return x
        finally:
            tracker.leave(x)

    return slow


async def test_open_block_exit_leaves_no_worker_running() -> None:
    tracker = Tracker()
    baseline = live_tasks()
    async with slow_stage(tracker).open(range(100)) as stream:
        results = [await stream.__anext__() for _ in range(3)]
        assert live_tasks() > baseline
    assert sorted(results) == [0, 1, 2]
    assert live_tasks() == baseline
    assert tracker.running == 0


async def test_open_block_break_stops_every_worker_before_exit() -> None:
    tracker = Tracker()
    baseline = live_tasks()
    async with slow_stage(tracker).open(range(1000)) as stream:
        async for item in stream:
            if item == 2:
                break
    assert live_tasks() == baseline
    assert tracker.running == 0
    assert len(tracker.started) >= 3


async def test_open_block_exception_propagates_unchanged() -> None:
    tracker = Tracker()
    baseline = live_tasks()
    error = KeyError("mine")
    with pytest.raises(KeyError) as caught:
        async with slow_stage(tracker).open(range(1000)) as stream:
            async for _ in stream:
                raise error
    assert caught.value is error
    assert live_tasks() == baseline
    assert tracker.running == 0


async def test_plain_iteration_to_the_end_leaves_no_worker() -> None:
    @single_task
    async def double(x: int) -> int:
        await anyio.lowlevel.checkpoint()
        return 2 * x

    baseline = live_tasks()
    results = [r async for r in double(range(50))]
    assert results == [2 * x for x in range(50)]
    assert live_tasks() == baseline


async def test_plain_iteration_break_stops_workers_promptly() -> None:
    tracker = Tracker()
    baseline = live_tasks()
    async for item in slow_stage(tracker)(range(1000)):
        if item == 2:
            break
    assert await settle_tasks(baseline) == baseline
    assert tracker.running == 0


async def test_plain_iteration_body_exception_propagates_and_stops_workers() -> None:
    tracker = Tracker()
    baseline = live_tasks()
    error = RuntimeError("in the loop body")
    with pytest.raises(RuntimeError) as caught:
        async for _ in slow_stage(tracker)(range(1000)):
            raise error
    assert caught.value is error
    assert await settle_tasks(baseline) == baseline
    assert tracker.running == 0


async def test_cancel_scope_around_plain_loop_stops_workers_before_it_exits() -> None:
    tracker = Tracker()
    baseline = live_tasks()
    seen = []
    with anyio.CancelScope() as scope:
        async for item in slow_stage(tracker)(range(1000)):
            seen.append(item)
            if item == 2:
                scope.cancel()
    assert scope.cancel_called
    assert seen == [0, 1, 2]
    # The cancelled __anext__ waited (shielded) for the run to stop.
    assert live_tasks() == baseline
    assert tracker.running == 0


async def test_cancel_scope_around_open_block_propagates_and_stops_workers() -> None:
    tracker = Tracker()
    baseline = live_tasks()
    with anyio.CancelScope() as scope:
        async with slow_stage(tracker).open(range(1000)) as stream:
            async for item in stream:
                if item == 1:
                    scope.cancel()
            pytest.fail("the cancellation did not reach the consumer")  # pragma: no cover
    assert scope.cancelled_caught
    assert live_tasks() == baseline
    assert tracker.running == 0


async def test_timeout_around_consumer_fires_and_stops_the_run() -> None:
    tracker = Tracker()
    baseline = live_tasks()
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.05):
            async for _ in slow_stage(tracker)(range(1000)):
                pass
    assert live_tasks() == baseline
    assert tracker.running == 0


async def test_aclose_stops_the_run_and_waits_for_workers() -> None:
    tracker = Tracker()
    baseline = live_tasks()
    iterator = aiter(slow_stage(tracker)(range(1000)))
    assert await anext(iterator) in (0, 1, 2)
    await iterator.aclose()  # type: ignore[attr-defined]
    assert live_tasks() == baseline
    assert tracker.running == 0
    with pytest.raises(StopAsyncIteration):
        await anext(iterator)


async def test_dropped_iterator_is_cancelled_by_its_finalizer() -> None:
    tracker = Tracker()
    baseline = live_tasks()
    iterator = aiter(slow_stage(tracker)(range(1000)))
    await anext(iterator)
    del iterator
    gc.collect()
    assert await settle_tasks(baseline) == baseline
    assert tracker.running == 0


async def test_source_async_generator_is_closed_on_early_exit() -> None:
    closed: list[bool] = []
    tracker = Tracker()
    async with slow_stage(tracker).open(numbers(10_000, closed)) as stream:
        async for item in stream:
            if item == 1:
                break
    assert closed == [True]


async def test_source_async_generator_is_closed_when_a_stage_fails() -> None:
    closed: list[bool] = []

    @single_task
    async def fail_on_five(x: int) -> int:
        if x == 5:
            raise ValueError("five")
        return x

    with pytest.raises(ValueError, match="five"):
        await fail_on_five(numbers(10_000, closed)).collect()
    assert closed == [True]


async def test_stage_failure_cancels_the_other_workers() -> None:
    tracker = Tracker()

    @single_task
    async def fail_on_one(x: int) -> int:
        if x == 1:
            raise ValueError("one")
        return x

    baseline = live_tasks()
    with pytest.raises(ValueError, match="one"):
        await (slow_stage(tracker) | fail_on_one)(range(1000)).collect()
    assert live_tasks() == baseline
    assert tracker.running == 0


async def test_many_runs_in_a_row_leave_no_tasks_behind() -> None:
    @single_task
    async def inc(x: int) -> int:
        await anyio.lowlevel.checkpoint()
        return x + 1

    baseline = live_tasks()
    for _ in range(200):
        assert await inc([1, 2, 3]).collect() == [2, 3, 4]
        async for _ in inc(range(10)):
            break
    assert await settle_tasks(baseline) == baseline

"""Batch stages: batches by size or deadline, several batch calls at once, the remainder.

All timing runs on virtual clocks (``virtual_clock``), so times are exact.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from conveyor import BatchRemainderError, batch_task, single_task

from .conftest import virtual_clock

MODES = pytest.mark.parametrize("mode", ["ordered", "as_completed"])


async def trickle(count: int, every: float = 0.1) -> AsyncIterator[int]:
    """One item every ``every`` seconds, the first at once."""
    for item in range(count):
        if item:
            await anyio.sleep(every)
        yield item


class Calls:
    """When each batch call started, with what, and how many ran at once."""

    def __init__(self) -> None:
        self.started: list[tuple[float, list[Any]]] = []
        self.running = 0
        self.peak = 0

    def enter(self, batch: list[Any]) -> None:
        self.started.append((anyio.current_time(), list(batch)))
        self.running += 1
        self.peak = max(self.peak, self.running)

    def leave(self) -> None:
        self.running -= 1

    def times(self, since: float) -> list[float]:
        """When each call started, in seconds after ``since``."""
        return [time - since for time, _ in self.started]

    @property
    def batches(self) -> list[list[Any]]:
        """What each call got, in the order the calls started."""
        return [batch for _, batch in self.started]


def recording_batch(calls: Calls, seconds: float = 0.0, **options: Any) -> Any:
    @batch_task(**options)
    async def batch(items: list[int]) -> list[int]:
        calls.enter(items)
        try:
            await anyio.sleep(seconds)
        finally:
            calls.leave()
        return items

    return batch


# -- max_wait -----------------------------------------------------------------


@virtual_clock
@MODES
async def test_a_trickling_source_starts_its_first_batch_after_max_wait(mode: str) -> None:
    calls = Calls()
    task = recording_batch(calls, max_size=10, max_wait=0.25)
    start = anyio.current_time()
    results = await task.with_execution_mode(mode)(trickle(6)).collect()
    assert sorted(results) == list(range(6))
    first_time, first_batch = calls.started[0]
    assert first_time - start == pytest.approx(0.25)
    assert first_batch == [0, 1, 2]  # the items of 0.0, 0.1 and 0.2 s


@virtual_clock
@MODES
async def test_a_batch_that_fills_before_max_wait_is_called_at_once(mode: str) -> None:
    calls = Calls()
    task = recording_batch(calls, max_size=3, max_wait=10.0)
    start = anyio.current_time()
    await task.with_execution_mode(mode)(trickle(7)).collect()
    times = calls.times(start)
    assert times[:2] == pytest.approx([0.2, 0.5])  # full at the 3rd and 6th item
    assert calls.batches == [[0, 1, 2], [3, 4, 5], [6]]


@virtual_clock
@MODES
async def test_max_wait_calls_only_batches_of_at_least_min_size(mode: str) -> None:
    calls = Calls()
    task = recording_batch(calls, min_size=3, max_size=10, max_wait=0.05)
    start = anyio.current_time()
    await task.with_execution_mode(mode)(trickle(6)).collect()
    # The oldest item has waited long enough at 0.05 s, but the batch is
    # called only once it holds min_size items: at the third, at 0.2 s.
    times = calls.times(start)
    assert times == pytest.approx([0.2, 0.5])
    assert calls.batches == [[0, 1, 2], [3, 4, 5]]


@virtual_clock
@MODES
async def test_the_end_of_the_input_calls_the_last_batch_without_waiting(mode: str) -> None:
    calls = Calls()
    task = recording_batch(calls, max_size=10, max_wait=100.0)
    start = anyio.current_time()
    await task.with_execution_mode(mode)(trickle(3)).collect()
    assert calls.started == [(pytest.approx(start + 0.2), [0, 1, 2])]


async def four_then_a_pause() -> AsyncIterator[int]:
    """Items 0-3 at once; the input then stays open for 5 more seconds."""
    for item in range(4):
        yield item
    await anyio.sleep(5.0)


@single_task
async def slow_first(item: int) -> int:
    await anyio.sleep(1.0 if item == 0 else 0.0)
    return item


@virtual_clock
async def test_in_ordered_mode_the_clock_starts_when_a_value_reaches_the_stage_in_order() -> None:
    calls = Calls()
    task = recording_batch(calls, max_size=10, max_wait=0.25)
    start = anyio.current_time()
    assert await (slow_first | task)(four_then_a_pause()).collect() == [0, 1, 2, 3]
    # Items 1-3 are done at once but reach the batch stage behind item 0.
    assert calls.started == [(pytest.approx(start + 1.25), [0, 1, 2, 3])]


@virtual_clock
async def test_as_completed_the_clock_starts_when_a_value_arrives() -> None:
    calls = Calls()
    task = recording_batch(calls, max_size=10, max_wait=0.25)
    start = anyio.current_time()
    results = await (slow_first | task).as_completed(four_then_a_pause()).collect()
    assert sorted(results[:3]) == [1, 2, 3]
    assert results[3] == 0
    assert calls.times(start) == pytest.approx([0.25, 1.25])


@virtual_clock
@MODES
async def test_max_wait_batches_the_values_of_expanded_items(mode: str) -> None:
    @single_task
    async def three_each(item: int) -> list[int]:
        await anyio.sleep(0.1 * item)
        return [10 * item, 10 * item + 1, 10 * item + 2]

    calls = Calls()
    task = recording_batch(calls, max_size=4, max_wait=0.05)
    start = anyio.current_time()
    results = await (three_each | task).with_execution_mode(mode)(range(3)).collect()
    assert sorted(results) == [0, 1, 2, 10, 11, 12, 20, 21, 22]
    assert calls.started == [
        (pytest.approx(start + 0.05), [0, 1, 2]),
        (pytest.approx(start + 0.15), [10, 11, 12]),
        (pytest.approx(start + 0.2), [20, 21, 22]),  # the end of the input
    ]


@virtual_clock
async def test_values_that_arrive_while_every_call_is_busy_join_the_late_batch() -> None:
    calls = Calls()
    task = recording_batch(calls, seconds=0.33, max_size=10, max_wait=0.15)
    start = anyio.current_time()
    await task(trickle(8)).collect()
    times = calls.times(start)
    # The first batch is due at 0.15 s; the second is due at 0.35 s but the
    # one call slot is busy until 0.48 s: it then takes what has arrived.
    assert times == pytest.approx([0.15, 0.48, 0.81])
    assert calls.batches == [[0, 1], [2, 3, 4], [5, 6, 7]]


# -- several batch calls at once ------------------------------------------------


@virtual_clock
@MODES
async def test_at_most_concurrency_limit_batch_calls_overlap(mode: str) -> None:
    calls = Calls()
    task = recording_batch(calls, seconds=1.0, max_size=2, concurrency_limit=3)
    start = anyio.current_time()
    results = await task.with_execution_mode(mode)(range(20)).collect()
    assert sorted(results) == list(range(20))
    assert calls.peak == 3  # slow calls: as many as allowed run at once
    assert anyio.current_time() - start == pytest.approx(4.0)  # 10 calls, 3 at a time


@virtual_clock
async def test_one_batch_call_at_a_time_by_default() -> None:
    calls = Calls()
    task = recording_batch(calls, seconds=1.0, max_size=2)
    await task(range(6)).collect()
    assert calls.peak == 1


@virtual_clock
async def test_concurrent_batches_release_in_input_order_without_waiting_for_later_ones() -> None:
    seconds = {0: 0.5, 2: 0.1, 4: 2.0, 6: 0.1}  # per batch, by its first item

    @batch_task(max_size=2, concurrency_limit=4)
    async def uneven(items: list[int]) -> list[int]:
        await anyio.sleep(seconds[items[0]])
        return items

    start = anyio.current_time()
    released: list[tuple[int, float]] = []
    async for value in uneven(range(8)):
        released.append((value, anyio.current_time() - start))
    assert [value for value, _ in released] == list(range(8))
    # Batch 1 waits for batch 0 only, never for the slow batch 2 after it.
    assert [time for _, time in released] == pytest.approx([0.5] * 4 + [2.0] * 4)


@virtual_clock
async def test_max_parallelism_counts_batch_calls() -> None:
    calls = Calls()
    task = recording_batch(calls, seconds=1.0, max_size=1, concurrency_limit=4)
    await task.with_context(max_parallelism=2)(range(8)).collect()
    assert calls.peak == 2


@virtual_clock
async def test_a_failing_concurrent_batch_fails_the_run_with_its_own_exception() -> None:
    @batch_task(max_size=2, concurrency_limit=3)
    async def fails_on_four(items: list[int]) -> list[int]:
        await anyio.sleep(0.1)
        if 4 in items:
            raise KeyError(4)
        return items

    with pytest.raises(KeyError):
        await fails_on_four(range(10)).collect()


# -- the remainder -----------------------------------------------------------------


@pytest.mark.anyio
async def test_a_remainder_below_min_size_is_logged_and_recorded_as_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @batch_task(min_size=3, max_size=3)
    def triples(items: list[int]) -> int:
        return sum(items)

    with caplog.at_level(logging.WARNING, logger="conveyor"):
        async with triples.open(range(8)) as results:
            assert [total async for total in results] == [3, 12]
    assert "dropped the last 2 item(s)" in caplog.text
    [failure] = results.failures
    assert failure.item == [6, 7]
    assert failure.task_name == "triples"
    assert failure.attempts == 0  # never called
    assert isinstance(failure.exception, BatchRemainderError)
    assert failure.exception.values == [6, 7]
    assert failure.exception.min_size == 3


@pytest.mark.anyio
async def test_a_plain_iteration_records_the_remainder_on_the_stream() -> None:
    @batch_task(min_size=2, max_size=2)
    def pairs(items: list[int]) -> int:
        return sum(items)

    stream = pairs(range(5))
    assert [total async for total in stream] == [1, 5]
    assert [failure.item for failure in stream.failures] == [[4]]


# -- bad options ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"max_wait": -1}, ValueError, "max_wait"),
        ({"max_wait": "soon"}, TypeError, "max_wait"),
        ({"concurrency_limit": 0}, ValueError, "concurrency_limit"),
        ({"concurrency_limit": 1.5}, TypeError, "concurrency_limit"),
    ],
)
def test_bad_batch_flow_options_fail_early(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        batch_task(max_size=2, **options)

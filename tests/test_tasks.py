"""Tasks: every kind of function, and the output rule (api.md section 2)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.lowlevel
import pytest

from conveyor import BatchTask, Pipeline, SingleTask, batch_task, single_task

pytestmark = pytest.mark.anyio


async def test_async_function_is_a_task() -> None:
    @single_task
    async def double(x: int) -> int:
        await anyio.lowlevel.checkpoint()
        return 2 * x

    assert isinstance(double, SingleTask)
    assert await double([1, 2, 3]).collect() == [2, 4, 6]


async def test_sync_function_is_a_task() -> None:
    @single_task
    def double(x: int) -> int:
        return 2 * x

    assert await double([1, 2, 3]).collect() == [2, 4, 6]


async def test_generator_function_yields_each_value_as_an_item() -> None:
    @single_task
    def twice(x: int) -> Iterator[int]:
        yield x
        yield x

    assert await twice([1, 2]).collect() == [1, 1, 2, 2]


async def test_async_generator_function_yields_each_value_as_an_item() -> None:
    @single_task
    async def spread(x: int) -> AsyncIterator[int]:
        for offset in range(3):
            await anyio.lowlevel.checkpoint()
            yield x * 10 + offset

    assert await spread([1, 2]).collect() == [10, 11, 12, 20, 21, 22]


async def test_returning_none_drops_the_item() -> None:
    @single_task
    def evens(x: int) -> int | None:
        return x if x % 2 == 0 else None

    assert await evens(range(7)).collect() == [0, 2, 4, 6]


async def test_returning_none_after_awaiting_drops_the_item() -> None:
    @single_task
    async def evens(x: int) -> int | None:
        await anyio.lowlevel.checkpoint()
        return x if x % 2 == 0 else None

    assert await evens(range(7)).collect() == [0, 2, 4, 6]


async def test_returned_list_is_flattened_in_order() -> None:
    @single_task
    async def repeat(x: int) -> list[int]:
        return [x] * x

    assert await repeat([1, 2, 3, 0]).collect() == [1, 2, 2, 3, 3, 3]


@pytest.mark.parametrize("value", [(1, 2), {"a": 1}, "text", b"bytes", 0, False, ""])
async def test_tuple_dict_str_and_falsy_results_are_one_item(value: object) -> None:
    @single_task
    def constant(_: int) -> object:
        return value

    assert await constant([1, 2]).collect() == [value, value]


async def test_expanded_items_stay_together_in_ordered_mode() -> None:
    @single_task
    def expand(x: int) -> list[int]:
        return [x, x]

    @single_task
    async def slow_for_first(x: int) -> int:
        await anyio.sleep(0.01 if x == 1 else 0)
        return x

    assert await (expand | slow_for_first)([1, 2, 3]).collect() == [1, 1, 2, 2, 3, 3]


async def test_expanded_items_each_go_through_the_next_stage() -> None:
    calls: list[int] = []

    @single_task
    def expand(x: int) -> list[int]:
        return list(range(x))

    @single_task
    async def record(x: int) -> int:
        calls.append(x)
        await anyio.lowlevel.checkpoint()
        return x

    assert await (expand | record)([3, 2]).collect() == [0, 1, 2, 0, 1]
    assert sorted(calls) == [0, 0, 1, 1, 2]


async def test_batch_task_receives_lists_of_max_size() -> None:
    seen: list[list[int]] = []

    @batch_task(max_size=3)
    def total(batch: list[int]) -> int:
        seen.append(batch)
        return sum(batch)

    assert await total(range(1, 8)).collect() == [6, 15, 7]
    assert seen == [[1, 2, 3], [4, 5, 6], [7]]


async def test_batch_returning_a_list_yields_each_element() -> None:
    @batch_task(max_size=2)
    async def doubled(batch: list[int]) -> list[int]:
        return [2 * x for x in batch]

    assert await doubled([1, 2, 3, 4, 5]).collect() == [2, 4, 6, 8, 10]


async def test_batch_returning_none_drops_the_batch() -> None:
    @batch_task(max_size=2)
    def odd_batches_only(batch: list[int]) -> int | None:
        return None if batch[0] % 4 == 0 else sum(batch)

    assert await odd_batches_only(range(8)).collect() == [5, 13]


async def test_small_remainder_below_min_size_is_dropped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @batch_task(min_size=2, max_size=3)
    def total(batch: list[int]) -> int:
        return sum(batch)

    with caplog.at_level(logging.WARNING, logger="conveyor"):
        assert await total([1, 2, 3, 4]).collect() == [6]
    assert any(
        "dropped the last 1 item" in record.getMessage() and "min_size=2" in record.getMessage()
        for record in caplog.records
    )


async def test_remainder_of_at_least_min_size_is_processed() -> None:
    @batch_task(min_size=2, max_size=3)
    def total(batch: list[int]) -> int:
        return sum(batch)

    assert await total([1, 2, 3, 4, 5]).collect() == [6, 9]


async def test_max_size_none_means_min_size() -> None:
    @batch_task(min_size=2)
    def sizes(batch: list[int]) -> int:
        return len(batch)

    assert await sizes(range(6)).collect() == [2, 2, 2]


async def test_batch_stage_sees_items_in_input_order_in_ordered_mode() -> None:
    @single_task
    async def reverse_speed(x: int) -> int:
        await anyio.sleep(0.001 * (10 - x))
        return x

    @batch_task(max_size=4)
    def keep(batch: list[int]) -> tuple[int, ...]:
        return tuple(batch)

    result = await (reverse_speed | keep)(range(10)).collect()
    assert result == [(0, 1, 2, 3), (4, 5, 6, 7), (8, 9)]


async def test_batch_calls_run_one_at_a_time() -> None:
    active = 0
    peak = 0

    @batch_task(max_size=2)
    async def slow(batch: list[int]) -> list[int]:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await anyio.sleep(0.001)
        active -= 1
        return batch

    assert await slow(range(10)).collect() == list(range(10))
    assert peak == 1


async def test_zero_input_async_generator_is_a_source() -> None:
    @single_task
    async def source() -> AsyncIterator[int]:
        for number in range(5):
            await anyio.lowlevel.checkpoint()
            yield number

    @single_task
    def square(x: int) -> int:
        return x * x

    assert await (source | square)().collect() == [0, 1, 4, 9, 16]


async def test_zero_input_function_returning_a_list_is_a_source() -> None:
    @single_task
    async def source() -> list[str]:
        return ["a", "b"]

    assert await source().collect() == ["a", "b"]


async def test_zero_input_source_returning_a_value_gives_that_one_item() -> None:
    @single_task
    async def answer() -> int:
        return 42

    @single_task
    def pair() -> tuple[int, int]:
        return (1, 2)

    @single_task
    def one() -> list[str]:
        return ["only"]

    assert await answer().collect() == [42]
    assert await pair().collect() == [(1, 2)]  # a tuple is one item
    assert await one().collect() == ["only"]


async def test_zero_input_source_returning_none_or_an_empty_list_gives_no_input() -> None:
    @single_task
    def nothing() -> None:
        return None

    @single_task
    async def empty() -> list[int]:
        return []

    assert await nothing().collect() == []
    assert await empty().collect() == []


async def test_zero_input_source_value_reaches_the_next_stage_as_itself() -> None:
    @single_task
    async def answer(offset: int = 0) -> int:
        return 42 + offset

    @single_task
    def double(x: int) -> int:
        return x * 2

    assert await (answer | double)().collect() == [84]
    assert await answer(offset=5).collect() == [47]  # with a side input


async def test_zero_input_source_stream_as_a_side_input_passes_the_value() -> None:
    @single_task
    async def answer() -> int:
        return 42

    @single_task
    def add(x: int, y: int) -> int:
        return x + y

    assert await add([1], answer()).collect() == [43]


async def test_zero_input_source_with_side_inputs() -> None:
    @single_task
    def count_to(limit: int) -> Iterator[int]:
        yield from range(limit)

    assert await count_to.with_inputs(3)().collect() == [0, 1, 2]
    assert await count_to(limit=4).collect() == [0, 1, 2, 3]  # keyword side input


async def test_endless_zero_input_source_streams_lazily() -> None:
    produced = 0

    @single_task
    async def endless() -> AsyncIterator[int]:
        nonlocal produced
        while True:
            produced += 1
            yield produced

    async with endless.open() as stream:
        async for number in stream:
            if number == 10:
                break
    assert produced < 1000


async def test_method_task_binds_to_its_instance() -> None:
    class Counter:
        def __init__(self, step: int) -> None:
            self.step = step
            self.calls = 0

        @single_task
        async def add(self, x: int) -> int:
            self.calls += 1
            return x + self.step

        @batch_task(max_size=2)
        def pairs(self, batch: list[int]) -> int:
            self.calls += 1
            return sum(batch) * self.step

    first, second = Counter(1), Counter(100)
    assert await first.add([1, 2]).collect() == [2, 3]
    assert await (second.add | second.pairs)([1, 2, 3]).collect() == [203 * 100, 103 * 100]
    assert (first.calls, second.calls) == (2, 5)


async def test_task_behaves_as_a_one_stage_pipeline() -> None:
    @single_task
    async def inc(x: int) -> int:
        return x + 1

    assert await inc([1, 2]).collect() == [2, 3]
    assert sorted(await inc.as_completed([1, 2]).collect()) == [2, 3]
    assert isinstance(inc.with_execution_mode("as_completed"), Pipeline)
    assert await inc.with_context(execution_mode="ordered")([5]).collect() == [6]
    async with inc.open([1, 2, 3]) as stream:
        assert [x async for x in stream] == [2, 3, 4]


async def test_process_returns_an_async_iterable_of_outputs() -> None:
    @single_task
    async def inc(x: int) -> int:
        return x + 1

    async def source() -> AsyncIterator[int]:
        for x in (1, 2, 3):
            yield x

    outputs = await inc.process(source())
    assert [x async for x in outputs] == [2, 3, 4]


async def test_tasks_constructed_directly_work_like_decorated_ones() -> None:
    single: SingleTask[int, int] = SingleTask(lambda x: x * 3, concurrency_limit=2)
    batch: BatchTask[int, int] = BatchTask(sum, min_size=1, max_size=2)
    assert await (single | batch)([1, 2, 3]).collect() == [9, 9]


async def test_coroutine_returned_by_a_sync_callable_is_awaited() -> None:
    async def later(x: int) -> int:
        await anyio.lowlevel.checkpoint()
        return -x

    task: SingleTask[int, int] = SingleTask(lambda x: later(x))
    assert await task([1, 2]).collect() == [-1, -2]

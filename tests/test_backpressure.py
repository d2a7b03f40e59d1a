"""Bounded memory: buffers and the reorder window stay bounded, a stalled
consumer stops the source, and a million items leave memory flat."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import pytest

from conveyor import batch_task, single_task

from .conftest import virtual_clock
from .helpers import MemoryWatch

pytestmark = pytest.mark.anyio

WINDOW = 256  # the documented default


class CountingSource:
    """An async iterator that counts how many items were taken from it."""

    def __init__(self, limit: int | None = None) -> None:
        self.taken = 0
        self.limit = limit

    def __aiter__(self) -> CountingSource:
        return self

    async def __anext__(self) -> int:
        if self.limit is not None and self.taken >= self.limit:
            raise StopAsyncIteration
        self.taken += 1
        return self.taken


@single_task
async def inc(x: int) -> int:
    return x + 1


@virtual_clock
async def test_stalled_consumer_stops_the_source() -> None:
    source = CountingSource()
    async with inc.open(source) as stream:
        assert await stream.__anext__() == 2
        await anyio.sleep(10)  # the consumer stalls; everything else may run
        taken = source.taken
        assert taken <= 2 * WINDOW + 1
        await anyio.sleep(10)
        assert source.taken == taken  # and it stays stopped


@virtual_clock
async def test_stalled_plain_loop_stops_the_source() -> None:
    source = CountingSource()
    async for _ in (inc | inc)(source):
        await anyio.sleep(10)
        taken = source.taken
        await anyio.sleep(10)
        assert source.taken == taken <= 2 * WINDOW + 1
        break


@virtual_clock
async def test_slow_head_item_bounds_how_far_later_items_run_ahead() -> None:
    started: list[int] = []

    @single_task
    async def slow_head(x: int) -> int:
        started.append(x)
        await anyio.sleep(1000 if x == 1 else 0)
        return x

    source = CountingSource(limit=10_000)
    async with slow_head.open(source) as stream:
        assert await stream.__anext__() == 1  # waits for the head: 1000 s
        assert len(started) <= WINDOW + 64
    assert source.taken <= 3 * WINDOW


@virtual_clock
@pytest.mark.parametrize("mode", ["ordered", "as_completed"])
@pytest.mark.parametrize("ahead", ["list", "generator"])
async def test_an_item_whose_values_are_not_all_out_holds_its_place_in_the_window(
    mode: str, ahead: str
) -> None:
    # Every item expands into two values, and the second one waits. No item
    # is released until both of its values are, so the window stops the
    # source. Before, an item's token came back once its values' calls had
    # started, and in ordered mode the source was read without bound while
    # the reorder step held ever more values.
    gate = anyio.Event()

    @single_task
    async def pair(x: int) -> object:
        await anyio.lowlevel.checkpoint()
        if ahead == "list":
            return [x, -x]
        return (value for value in (x, -x))

    @single_task
    async def hold(x: int) -> int:
        if x < 0:
            await gate.wait()
        else:
            await anyio.sleep(0.002)
        return x

    source = CountingSource(limit=1000)
    pipeline = (pair | hold).with_execution_mode(mode)  # type: ignore[arg-type]
    async with pipeline.open(source) as stream:
        first: list[int] = []
        with anyio.move_on_after(10):  # the consumer takes what comes out
            async for value in stream:
                first.append(value)
        statistics = stream.statistics()
        assert source.taken <= WINDOW + 1
        assert statistics.items_in_flight == statistics.items_read  # no item is out
        assert statistics.held_for_order <= 2 * WINDOW
        gate.set()
        rest = [value async for value in stream]
    expected = [value for x in range(1, 1001) for value in (x, -x)]
    if mode == "ordered":
        assert first + rest == expected
    else:
        assert all(value > 0 for value in first)
        assert sorted(first + rest) == sorted(expected)


@virtual_clock
async def test_batch_stage_passes_backpressure_upstream() -> None:
    source = CountingSource()

    @batch_task(max_size=10)
    def total(batch: list[int]) -> int:
        return sum(batch)

    async with (inc | total | inc).open(source) as stream:
        await stream.__anext__()
        await anyio.sleep(10)
        taken = source.taken
        await anyio.sleep(10)
        assert source.taken == taken
        assert taken <= 10 * (2 * WINDOW + 1) + 2 * WINDOW


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_a_million_items_through_three_stages_keep_memory_flat() -> None:
    count = 1_000_000

    async def numbers() -> AsyncIterator[int]:
        for number in range(count):
            yield number

    @single_task
    async def add(x: int) -> int:
        return x + 1

    @single_task
    def double(x: int) -> int:
        return 2 * x

    @single_task
    async def sub(x: int) -> int:
        if x % 100_000 == 0:  # now and then a call that really suspends
            await anyio.lowlevel.checkpoint()
        return x - 2

    # Warm up so that code objects and caches exist before the baseline.
    await (add | double | sub)(range(10_000)).collect()
    memory = MemoryWatch()
    received = 0
    expected = 0
    async for value in (add | double | sub)(numbers()):
        assert value == expected  # every item, in order
        expected += 2
        received += 1
        if received % 50_000 == 0:
            memory.sample()
    assert received == count
    assert memory.growth_mb < 20, f"memory grew by {memory.growth_mb:.1f} MB"

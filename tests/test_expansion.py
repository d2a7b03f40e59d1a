"""One item, many values: expansions stream value by value (issue: expansions).

A generator or async generator task passes each value on as it is yielded,
a list result travels value by value, ordered mode releases each value as
soon as it and everything before it is out, and a generator is advanced only
while its values drain (so memory stays flat however much one item expands
to). Timings run on virtual clocks, so they are exact.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from conveyor import ErrorHandler, batch_task, single_task

from .conftest import virtual_clock
from .helpers import MemoryWatch, live_tasks

pytestmark = pytest.mark.anyio

MODES = pytest.mark.parametrize("mode", ["ordered", "as_completed"])


async def timed(stream: Any) -> list[tuple[Any, float]]:
    """Each result with the virtual time it was released at."""
    start = anyio.current_time()
    return [(value, round(anyio.current_time() - start, 6)) async for value in stream]


@single_task
async def three_slow_values(x: int) -> AsyncIterator[int]:
    for k in range(3):
        await anyio.sleep(0.3)
        yield 10 * x + k


# -- values leave as they are made (the table) ------------------------


@virtual_clock
@MODES
async def test_a_generator_task_releases_each_value_as_it_is_yielded(mode: str) -> None:
    pipeline = three_slow_values.with_execution_mode(mode)
    assert await timed(pipeline([1])) == [(10, 0.3), (11, 0.6), (12, 0.9)]


@virtual_clock
@MODES
async def test_a_generator_task_streams_inside_open(mode: str) -> None:
    async with three_slow_values.with_execution_mode(mode).open([1]) as results:
        assert await timed(results) == [(10, 0.3), (11, 0.6), (12, 0.9)]


@virtual_clock
async def test_as_completed_call_streams_a_generator() -> None:
    assert await timed(three_slow_values.as_completed([1])) == [(10, 0.3), (11, 0.6), (12, 0.9)]


@virtual_clock
async def test_the_next_stage_starts_while_the_generator_still_runs() -> None:
    started: list[tuple[int, float]] = []

    @single_task
    async def note(value: int) -> int:
        started.append((value, round(anyio.current_time(), 6)))
        return value

    assert await (three_slow_values | note)([1]).collect() == [10, 11, 12]
    assert started == [(10, 0.3), (11, 0.6), (12, 0.9)]


@single_task
def listy(x: int) -> list[int]:
    return [x, x + 100]


@single_task
async def slow_for_big(x: int) -> int:
    await anyio.sleep(1.0 if x >= 100 else 0.05)
    return x


@virtual_clock
async def test_a_list_value_is_not_held_back_for_a_slower_sibling() -> None:
    assert await timed((listy | slow_for_big)([1])) == [(1, 0.05), (101, 1.0)]


@batch_task(max_size=10)
def whole_batch(items: list[int]) -> list[int]:
    return items


@single_task
async def slow_for_nines(x: int) -> int:
    await anyio.sleep(1.0 if x % 10 == 9 else 0.05)
    return x


@virtual_clock
async def test_a_batch_results_values_are_released_one_by_one_in_order() -> None:
    result = await timed((whole_batch | slow_for_nines)(range(20)))
    assert result == [(x, 0.05) for x in range(9)] + [(x, 1.0) for x in range(9, 20)]


@virtual_clock
@MODES
async def test_a_batch_fills_from_a_generator_that_is_still_running(mode: str) -> None:
    calls: list[tuple[list[int], float]] = []

    @single_task
    async def slowly(x: int) -> AsyncIterator[int]:
        for k in range(7):
            await anyio.sleep(1)
            yield k

    @batch_task(max_size=3)
    def batch(items: list[int]) -> list[int]:
        calls.append((items, round(anyio.current_time(), 6)))
        return items

    result = await (slowly | batch).with_execution_mode(mode)([0]).collect()
    assert result == list(range(7))
    # Each batch is called as soon as it is full, not when the generator ends
    # (the remainder [6] at the end of the input, which comes at 7 s).
    assert calls == [([0, 1, 2], 3.0), ([3, 4, 5], 6.0), ([6], 7.0)]


@virtual_clock
async def test_nested_expansions_stream_rows_before_the_pages_end() -> None:
    @single_task
    async def pages(book: str) -> AsyncIterator[str]:
        for page in range(3):
            await anyio.sleep(1.0)
            yield f"{book}{page}"

    @single_task
    async def rows(page: str) -> AsyncIterator[str]:
        for row in range(2):
            await anyio.sleep(0.1)
            yield f"{page}.{row}"

    result = await timed((pages | rows)(["a", "b"]))
    assert [value for value, _ in result] == [
        f"{book}{page}.{row}" for book in "ab" for page in range(3) for row in range(2)
    ]
    # a0.0 is out at 1.1 s, long before book "a" has yielded its last page at 3 s.
    assert result[0] == ("a0.0", 1.1)
    assert result[1] == ("a0.1", 1.2)


@virtual_clock
async def test_an_endless_generator_gives_ten_values_then_is_closed() -> None:
    closed: list[bool] = []

    @single_task
    async def forever(x: int) -> AsyncIterator[int]:
        try:
            n = 0
            while True:
                await anyio.sleep(0.01)
                yield n
                n += 1
        finally:
            closed.append(True)

    seen = []
    async for value in forever([1]):
        seen.append(value)
        if len(seen) == 10:
            break
    await anyio.sleep(0.5)  # the dropped iterator's host ends soon after
    assert seen == list(range(10))
    assert closed == [True]


# -- backpressure inside an expansion ------------------------------------------


def _count_made() -> tuple[list[int], Any]:
    made = [0]

    @single_task
    async def endless(x: int) -> AsyncIterator[int]:
        while True:
            made[0] += 1
            yield made[0]
            if made[0] % 100 == 0:
                await anyio.lowlevel.checkpoint()

    return made, endless


@virtual_clock
@MODES
async def test_a_stalled_consumer_stops_an_endless_generator(mode: str) -> None:
    made, endless = _count_made()

    @single_task
    def inc(x: int) -> int:
        return x + 1

    async with (endless | inc).with_execution_mode(mode).open([1]) as results:
        await results.__anext__()
        await anyio.sleep(5)
        stalled_at = made[0]
        await anyio.sleep(5)
        assert made[0] == stalled_at
        assert stalled_at < 5_000  # a bounded number of values, not the whole stream


@virtual_clock
async def test_a_thread_generator_is_advanced_only_while_there_is_room() -> None:
    made = [0]

    @single_task(run_in_thread=True)
    def read_lines(path: str) -> Iterator[str]:
        while True:
            made[0] += 1
            yield f"{path}:{made[0]}"

    async with read_lines.open(["a.txt"]) as results:
        assert await results.__anext__() == "a.txt:1"
        for _ in range(50):  # real threads: give them real time to run ahead
            await anyio.to_thread.run_sync(lambda: None)
        stalled_at = made[0]
        for _ in range(50):
            await anyio.to_thread.run_sync(lambda: None)
        assert made[0] == stalled_at < 5_000


@virtual_clock
async def test_a_fast_expansion_behind_a_slow_head_item_stays_bounded() -> None:
    made = [0]

    @single_task
    async def slow_head(x: int) -> int:
        if x == 0:
            await anyio.sleep(100)
        return x

    @single_task
    def many(x: int) -> Iterator[int]:
        for k in range(1_000_000):
            made[0] += 1
            yield k

    async with (slow_head | many).open(range(3)) as results:
        await anyio.sleep(50)
        assert made[0] < 5_000  # item 1 and 2 wait for item 0, in bounded memory
        first = await results.__anext__()
        assert first == 0


@virtual_clock
async def test_a_head_item_expansion_goes_on_however_far_later_items_ran_ahead() -> None:
    @single_task(concurrency_limit=4)
    async def expand(x: int) -> AsyncIterator[tuple[int, int]]:
        for k in range(2_000 if x == 0 else 700):
            if x == 0 and k % 100 == 0:
                await anyio.sleep(1)  # the head item is the slow one
            yield (x, k)

    result = await expand(range(12)).collect()
    assert result == [(x, k) for x in range(12) for k in range(2_000 if x == 0 else 700)]


@virtual_clock
async def test_the_head_item_starts_beyond_the_limit_when_later_items_hold_every_slot(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Items 1 and 2 reach the expanding stage first and take both its slots;
    # their values wait for item 0, which waits for a slot. Item 0 is what the
    # release waits for, so it starts beyond the limit, and the endless later
    # expansions stay paused within their memory bound.
    @single_task
    async def head_last(x: int) -> int:
        await anyio.sleep(1 if x == 0 else 0)
        return x

    made = [0, 0, 0]

    @single_task(concurrency_limit=2)
    def expand(x: int) -> Iterator[tuple[int, int]]:
        k = 0
        while x != 0 or k < 3_000:  # items 1 and 2 never end
            made[x] += 1
            yield (x, k)
            k += 1

    got: list[tuple[int, int]] = []
    async with (head_last | expand).open(range(3)) as results:
        async for value in results:
            got.append(value)
            if len(got) == 3_010:
                break
    assert got == [(0, k) for k in range(3_000)] + [(1, k) for k in range(10)]
    assert made[2] < 1_000  # paused at its allowance all along
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


@virtual_clock
async def test_expansions_in_every_slot_wait_within_their_bound_while_the_heads_values_travel(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Items 0 to 3 hold every slot, paused at their memory bound, and item 4
    # queues for a slot. The release waits for item 0's values, which are in
    # the next stage: as they are released item 0 goes on, ends and frees its
    # slot. Nothing is stuck, so no expansion may go past its bound (before,
    # all four did, with a warning that an earlier item waited).
    @single_task(concurrency_limit=4)
    async def expand(x: int) -> AsyncIterator[tuple[int, int]]:
        await anyio.sleep(0.001 * (3 - x % 3))
        for k in range(700):
            if k % 50 == 0:
                await anyio.lowlevel.checkpoint()
            yield (x, k)

    @single_task
    async def io(value: tuple[int, int]) -> tuple[int, int]:
        await anyio.sleep(0.0005 if value[1] % 7 else 0)
        return value

    result = await (expand | io)(range(12)).collect()
    assert result == [(x, k) for x in range(12) for k in range(700)]
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


@pytest.mark.parametrize("run", range(12))
async def test_a_stage_that_gets_stuck_as_a_call_ends_goes_on(
    run: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two generator stages with one slot each feed batch calls two at a time,
    # and the head item is slow. A call started beyond the limit ends while
    # the batch stage waits; only then is its stage stuck (a later item's
    # paused expansion holds the slot, the item the release waits for is
    # parked). The worker that gave the slot back must see it: before, it went
    # idle, nothing else looked, and about one run in three hung on trio.
    # Small bounds (window 4, allowance 8) make that moment common.
    import conveyor._engine._expand as expand_module
    import conveyor._engine._run as run_module
    import conveyor._engine._single as single_module

    monkeypatch.setattr(expand_module, "EXPANSION_ALLOWANCE", 8)
    monkeypatch.setattr(single_module, "EXPANSION_ALLOWANCE", 8)
    monkeypatch.setattr(run_module, "DEFAULT_WINDOW", 4)
    monkeypatch.setattr(run_module, "DEFAULT_CHUNK", 2)

    @single_task(chunk_size=2)
    async def head(x: int) -> int:
        await anyio.sleep(0.05 if x == 0 else 0.0005)
        return x + 7

    def spread(x: int) -> Iterator[int]:
        yield from (x + j for j in range(x % 11))

    @batch_task(min_size=1, max_size=3, concurrency_limit=2)
    async def total(values: list[int]) -> list[int]:
        await anyio.sleep(0.0005 * (len(values) + sum(values) % 3))
        return [sum(values)] + [v for v in values if v % 2]

    once = single_task(concurrency_limit=1, chunk_size=1)(spread)
    twice = single_task(concurrency_limit=1, chunk_size=1)(spread)
    values = [w for x in range(21) for v in spread(x + 7) for w in spread(v)]
    batches = [values[k : k + 3] for k in range(0, len(values), 3)]
    expected = [r for b in batches for r in [sum(b)] + [v for v in b if v % 2]]
    with anyio.fail_after(30):
        assert await (head | once | twice | total)(range(21)).collect() == expected


@virtual_clock
async def test_later_items_paused_in_every_slot_go_on_when_the_next_call_is_not_due(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Item 2 takes the only slot, then item 1 queues for it; the release
    # waits for item 0, which is still on its way, so item 1 may not start
    # beyond the limit: the stuck-stage rule lets item 2 go on (past the
    # memory bound, with a warning) until it ends.
    @single_task(concurrency_limit=3)
    async def head_last(x: int) -> int:
        await anyio.sleep(2 - x)
        return x

    @single_task(concurrency_limit=1)
    def expand(x: int) -> Iterator[tuple[int, int]]:
        for k in range(3_000):
            yield (x, k)

    result = await (head_last | expand)(range(3)).collect()
    assert result == [(x, k) for x in range(3) for k in range(3_000)]
    [warning] = [r for r in caplog.records if "held by an expansion of a later" in r.message]
    assert warning.levelname == "WARNING"
    assert "'expand'" in warning.getMessage()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_one_item_expanding_to_two_million_values_keeps_memory_flat() -> None:
    count = 2_000_000

    @single_task
    async def lines(path: str) -> AsyncIterator[str]:
        for number in range(count):
            if number % 1_000 == 0:
                await anyio.lowlevel.checkpoint()
            yield f"{path}: line {number:>10} of a rather long file"

    @single_task
    def length(line: str) -> int:
        return len(line)

    @single_task
    async def double(n: int) -> int:
        return 2 * n

    memory = MemoryWatch()
    received = 0
    async for value in (lines | length | double)(["a.txt"]):
        assert value == 2 * len(f"a.txt: line {received:>10} of a rather long file")
        received += 1
        if received % 100_000 == 0:
            memory.sample()
    assert received == count
    assert memory.growth_mb < 20, f"memory grew by {memory.growth_mb:.1f} MB"


# -- lifecycle -----------------------------------------------------------------


def _tracked_generators() -> tuple[list[int], list[int], Any, Any]:
    started: list[int] = []
    closed: list[int] = []

    @single_task
    async def agen(x: int) -> AsyncIterator[int]:
        started.append(x)
        try:
            for k in range(1_000):
                await anyio.sleep(0.01 * (x % 3))
                yield k
        finally:
            closed.append(x)

    @single_task
    def gen(x: int) -> Iterator[int]:
        started.append(-x - 1)
        try:
            yield from range(1_000)
        finally:
            closed.append(-x - 1)

    return started, closed, agen, gen


@virtual_clock
@pytest.mark.parametrize("how", ["break", "raise", "cancel", "fail"])
@pytest.mark.parametrize("style", ["open", "plain"])
async def test_every_running_generator_is_closed_on_every_way_out(how: str, style: str) -> None:
    started, closed, agen, gen = _tracked_generators()

    @single_task
    async def maybe_fail(k: int) -> int:
        if how == "fail" and k == 500:
            raise KeyError("stage failure")
        return k

    pipeline = agen | gen | maybe_fail
    baseline = live_tasks()

    async def body(seen: int, scope: anyio.CancelScope) -> bool:
        """The loop body at result ``seen``: True to break."""
        if seen == 700:
            if how == "raise":
                raise ValueError("consumer")
            if how == "cancel":
                scope.cancel()
            return how == "break"
        return False

    with anyio.CancelScope() as scope:
        try:
            seen = 0
            if style == "open":
                async with pipeline.open(range(6)) as results:
                    async for _ in results:
                        seen += 1
                        if await body(seen, scope):
                            break
            else:
                async for _ in pipeline(range(6)):
                    seen += 1
                    if await body(seen, scope):
                        break
        except (ValueError, KeyError):
            if how not in ("raise", "fail"):
                raise
    await anyio.sleep(1)  # a dropped plain iterator's host ends soon after
    assert live_tasks() == baseline
    assert started
    assert sorted(closed) == sorted(started)


# -- errors part-way through an expansion --------------------------------------


class Boom(Exception):
    pass


def _fails_after(made: int, calls: list[int]) -> Any:
    async def partial(x: int) -> AsyncIterator[int]:
        calls.append(x)
        for k in range(made):
            yield 10 * x + k
            await anyio.sleep(0.1)
        raise Boom(x)

    return partial


@virtual_clock
@MODES
async def test_skip_keeps_the_values_passed_on_and_records_how_many(mode: str) -> None:
    calls: list[int] = []
    task = single_task(
        _fails_after(2, calls), on_error="skip_item", retry_attempts=3, retry_delay=0
    )
    stream = task.with_execution_mode(mode)([1, 2])
    values = await stream.collect()
    assert sorted(values) == [10, 11, 20, 21]
    assert calls == [1, 2]  # values were passed on: never retried
    assert sorted((f.item, f.values_passed_on, f.attempts) for f in stream.failures) == [
        (1, 2, 1),
        (2, 2, 1),
    ]


@virtual_clock
async def test_a_generator_that_fails_before_its_first_value_is_retried() -> None:
    calls: list[int] = []

    async def flaky(x: int) -> AsyncIterator[int]:
        calls.append(x)
        if len(calls) < 3:
            raise Boom(x)
        yield x
        yield x + 1

    task = single_task(flaky, retry_attempts=3, retry_delay=0.5)
    assert await timed(task([7])) == [(7, 1.5), (8, 1.5)]
    assert calls == [7, 7, 7]


@virtual_clock
async def test_an_error_handler_replacement_comes_after_the_values_passed_on() -> None:
    class Replace(ErrorHandler):
        async def handle_error(
            self, error: Exception, item: Any, task_name: str, attempt: int
        ) -> tuple[bool, Any]:
            return True, [-1, -2]

    task = single_task(_fails_after(2, []), error_handler=Replace())
    assert await task([1, 2]).collect() == [10, 11, -1, -2, 20, 21, -1, -2]


@virtual_clock
async def test_fail_policy_raises_the_original_error_after_the_values_before_it() -> None:
    task = single_task(_fails_after(3, []))
    seen: list[int] = []
    with pytest.raises(Boom):
        async for value in task([1]):
            seen.append(value)
    assert seen == [10, 11, 12]


@virtual_clock
async def test_timeout_bounds_each_wait_for_a_value_not_the_whole_call() -> None:
    @single_task(timeout=1.0, on_error="skip_item")
    async def paced(x: int) -> AsyncIterator[int]:
        for k in range(4):
            await anyio.sleep(0.6 if k < 3 else 5.0)  # 3 values in time, then too slow
            yield k

    stream = paced([1])
    assert await timed(stream) == [(0, 0.6), (1, 1.2), (2, 1.8)]
    [failure] = stream.failures
    assert isinstance(failure.exception, TimeoutError)
    assert failure.values_passed_on == 3


@pytest.mark.parametrize("retries", [1, 3], ids=["no-retries", "retries"])
async def test_a_thread_generator_keeps_the_values_it_made_before_it_failed(retries: int) -> None:
    calls: list[int] = []

    @single_task(run_in_thread=True, on_error="skip_item", retry_attempts=retries)
    def lines(x: int) -> Iterator[int]:
        calls.append(x)
        yield from range(10)
        raise OSError("disk went away")

    stream = lines([1])
    assert await stream.collect() == list(range(10))
    assert calls == [1]  # values were passed on: never retried
    [failure] = stream.failures
    assert (failure.values_passed_on, failure.attempts) == (10, 1)
    assert isinstance(failure.exception, OSError)


async def test_a_thread_generator_passes_a_value_on_before_it_makes_the_next() -> None:
    taken = threading.Event()

    @single_task(run_in_thread=True)
    def reader(x: int) -> Iterator[int]:
        yield 0
        # The next value only comes once the first one was released: a value
        # held back until the next one is made would wait here forever.
        if not taken.wait(timeout=10):
            raise AssertionError("value 0 was held back")
        yield 1

    got = []
    with anyio.fail_after(20):
        async for value in reader([1]):
            got.append(value)
            taken.set()
    assert got == [0, 1]


async def test_timeout_bounds_each_wait_of_a_thread_generator() -> None:
    @single_task(run_in_thread=True, timeout=0.05, on_error="skip_item")
    def stuck(x: int) -> Iterator[int]:
        yield 0
        time.sleep(0.5)  # ten times the timeout: this value is too late
        yield 1

    stream = stuck([1])
    assert await stream.collect() == [0]
    [failure] = stream.failures
    assert isinstance(failure.exception, TimeoutError)
    assert failure.values_passed_on == 1


@virtual_clock
async def test_timeout_does_not_count_time_paused_by_backpressure() -> None:
    @single_task(timeout=1.0)
    async def quick(x: int) -> AsyncIterator[int]:
        for k in range(2_000):
            yield k

    async with quick.open([1]) as results:
        got = [await results.__anext__()]
        await anyio.sleep(10)  # the generator is paused all this time
        got += [value async for value in results]
    assert got == list(range(2_000))


# -- instruments: a generator's call lasts until it returns ------------------


@virtual_clock
async def test_a_generator_call_is_reported_when_it_ends_with_its_paused_time() -> None:
    from conveyor import CallInfo, Instrument

    ended: list[tuple[float | None, float]] = []

    class Calls(Instrument):
        def call_finished(self, call: CallInfo) -> None:
            ended.append((call.duration, call.paused))

    @single_task(retry_attempts=2, retry_delay=0)
    async def quick(x: int) -> AsyncIterator[int]:
        for k in range(2_000):
            if k % 500 == 0:
                await anyio.sleep(0.5)
            yield k

    async with quick.with_instruments(Calls()).open([1]) as results:
        await results.__anext__()
        await anyio.sleep(10)  # paused: its values are not taken
        rest = [value async for value in results]
    assert len(rest) == 1_999
    [(duration, paused)] = ended
    assert duration is not None
    # Its own 4 x 0.5 s, one of them while the consumer slept, and the pause.
    assert duration >= 11
    assert 8 <= paused <= duration - 1.5


# -- expansions through executor stages ----------------------------------------


def _square(value: int) -> int:
    return value * value


def _both_signs(value: int) -> list[int]:
    return [value, -value]


@MODES
async def test_a_generator_feeds_an_executor_stage_and_every_value_comes_out(mode: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    @single_task
    async def values(x: int) -> AsyncIterator[int]:
        for k in range(5):
            await anyio.lowlevel.checkpoint()
            yield 10 * x + k

    with ThreadPoolExecutor(2) as pool:
        square = single_task(_square, executor=pool)
        both = single_task(_both_signs, executor=pool)

        @single_task
        def inc(value: int) -> int:
            return value + 1

        def same(got: list[int], expected: list[int]) -> bool:
            return got == expected if mode == "ordered" else sorted(got) == sorted(expected)

        got = await (values | square).with_execution_mode(mode)(range(4)).collect()
        assert same(got, [(10 * x + k) ** 2 for x in range(4) for k in range(5)])
        got = await (values | both | inc).with_execution_mode(mode)(range(3)).collect()
        signed = [v for x in range(3) for k in range(5) for v in (10 * x + k, -(10 * x + k))]
        assert same(got, [v + 1 for v in signed])

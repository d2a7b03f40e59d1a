"""The input: slow sources stream, blocking ones read in a thread, errors end it (issue 10 §4, §6).

The feeder's clock is replaced by a fake one that only a "blocking" source
advances (each reading takes 5 fake milliseconds), so that what the loop sees
of a slow source is exact and no test depends on the machine's speed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from conveyor import read_in_thread, single_task
from conveyor._engine import _feeder

from .helpers import closing_source, current_backend

pytestmark = pytest.mark.anyio

READING = 0.005  # seconds per reading of the slow source


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    clock = FakeClock()
    monkeypatch.setattr(_feeder, "clock", clock)
    return clock


class Sensor:
    """An endless blocking source: each reading takes ``READING`` fake seconds."""

    def __init__(self, clock: FakeClock, quick_first: int = 0) -> None:
        self.clock = clock
        self.readings = 0
        self.quick_first = quick_first

    def __iter__(self) -> Iterator[int]:
        while True:
            if self.readings >= self.quick_first:
                self.clock.now += READING
            self.readings += 1
            yield self.readings


@single_task
def handle(x: int) -> int:
    return x


@pytest.mark.parametrize("quick_first", [0, 1000])
async def test_a_slow_sync_source_gives_its_first_result_after_about_one_reading(
    fake_clock: FakeClock, quick_first: int
) -> None:
    sensor = Sensor(fake_clock, quick_first)
    async with handle.open(iter(sensor)) as results:
        async for _ in results:
            break
    # Readings taken before the first result: about one slow one (a reading per
    # scheduler pass until the consumer's turn comes), not a chunk's worth.
    assert sensor.readings <= quick_first + 4


@pytest.mark.parametrize("quick_first", [0, 1000])
async def test_a_slow_sync_source_never_stalls_the_loop_longer_than_a_reading_and_a_slice(
    fake_clock: FakeClock, quick_first: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    sensor = Sensor(fake_clock, quick_first)
    yields: list[tuple[int, float]] = []  # (readings, fake time) at each time the feeder yields

    async def checkpoint() -> None:
        yields.append((sensor.readings, fake_clock.now))
        await anyio.lowlevel.checkpoint()

    monkeypatch.setattr(_feeder, "checkpoint", checkpoint)
    async with handle.open(iter(sensor)) as results:
        async for _ in results:
            if sensor.readings > quick_first + 100:
                break
    slow = [(n, t) for n, t in yields if n > quick_first]
    stalls = [t2 - t1 for (_, t1), (_, t2) in itertools.pairwise(slow)]
    assert len(stalls) >= 50
    # The feeder yields after every slow reading: never more than one between two yields.
    assert max(stalls) <= _feeder.TIME_SLICE + READING
    if quick_first:  # quick readings are checked 16 at a time, then one by one
        assert slow[0][0] <= quick_first + 16


# -- errors of the input ----------------------------------------------------------


def failing_source(kind: str, count: int, error: Exception) -> Any:
    """``count`` items, then ``error``: a generator, an async generator or a thread read."""

    def sync() -> Iterator[int]:
        yield from range(count)
        raise error

    async def asynchronous() -> AsyncIterator[int]:
        for number in range(count):
            if number % 3 == 0:
                await anyio.lowlevel.checkpoint()
            yield number
        raise error

    if kind == "sync":
        return sync()
    if kind == "async":
        return asynchronous()
    return read_in_thread(sync(), batch_size=4)


SOURCES = ["sync", "async", "thread"]


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("mode", ["ordered", "as_completed"])
@pytest.mark.parametrize("count", [0, 5, 300])
async def test_an_input_error_comes_after_every_item_read_before_it(
    source: str, mode: str, count: int
) -> None:
    error = OSError("the device went away")

    @single_task
    async def slow_double(x: int) -> int:
        await anyio.sleep(0.001 if x % 7 == 0 else 0)
        return 2 * x

    task = slow_double.with_execution_mode(mode)  # type: ignore[arg-type]
    got: list[int] = []
    with pytest.raises(OSError, match="the device went away") as caught:
        async for value in task(failing_source(source, count, error)):
            got.append(value)
    assert caught.value is error
    assert sorted(got) == [2 * x for x in range(count)]
    assert error.__notes__ == [f"conveyor: raised by the input after {count} item(s) were read"]


async def test_an_input_error_comes_after_the_last_batch() -> None:
    from conveyor import batch_task

    @batch_task(max_size=4)
    def total(batch: list[int]) -> int:
        return sum(batch)

    error = OSError("disk")
    async with total.open(failing_source("sync", 6, error)) as results:
        got = []
        with pytest.raises(OSError, match="disk"):
            async for value in results:
                got.append(value)
    assert got == [0 + 1 + 2 + 3, 4 + 5]


async def test_a_source_task_s_error_names_the_task() -> None:
    @single_task
    def readings() -> Iterator[int]:
        yield 1
        raise OSError("sensor")

    with pytest.raises(OSError, match="sensor") as caught:
        await readings().collect()
    assert caught.value.__notes__ == [
        "conveyor: raised by source task 'readings' after 1 item(s) were read"
    ]


# -- errors while the input is closed -----------------------------------------------


@pytest.mark.parametrize("source", ["sync", "async"])
@pytest.mark.parametrize("how", ["open", "first", "aclose"])
async def test_an_error_raised_while_the_input_is_closed_arrives_once(
    source: str, how: str
) -> None:
    error = RuntimeError("cleanup failed")
    with pytest.raises(RuntimeError) as caught:
        if how == "open":
            async with handle.open(closing_source(source, error)) as results:
                async for _ in results:
                    break
        elif how == "first":
            await handle(closing_source(source, error)).first()
        else:
            iterator = aiter(handle(closing_source(source, error)))
            await anext(iterator)
            await iterator.aclose()  # type: ignore[attr-defined]
    assert caught.value is error
    assert error.__notes__ == ["conveyor: raised by the input while it was being closed"]


@pytest.mark.parametrize("source", ["sync", "async"])
async def test_an_error_of_a_dropped_iterator_goes_to_the_event_loop(
    source: str, caplog: pytest.LogCaptureFixture
) -> None:
    error = RuntimeError("cleanup failed")
    reported: list[BaseException] = []
    if current_backend() == "asyncio":
        loop = asyncio.get_running_loop()
        previous = loop.get_exception_handler()
        loop.set_exception_handler(lambda _, context: reported.append(context["exception"]))
    try:
        async for _ in handle(closing_source(source, error)):
            break  # the iterator is dropped: nobody is left to raise the error to
        with anyio.fail_after(5):
            while not reported and not caplog.records:
                await anyio.sleep(0.001)
    finally:
        if current_backend() == "asyncio":
            loop.set_exception_handler(previous)
    if current_backend() == "trio":
        [record] = [r for r in caplog.records if r.name == "conveyor"]
        assert record.levelno == logging.ERROR
        assert record.exc_info is not None
        reported.append(record.exc_info[1])  # type: ignore[arg-type]
    assert reported == [error]
    assert len(error.__notes__) == 1


# -- read_in_thread ----------------------------------------------------------


async def test_read_in_thread_reads_a_blocking_iterable_in_worker_threads() -> None:
    threads: set[str] = set()

    def rows() -> Iterator[int]:
        for number in range(300):
            threads.add(threading.current_thread().name)
            yield number

    assert await handle(read_in_thread(rows())).collect() == list(range(300))
    assert threading.main_thread().name not in threads


async def test_read_in_thread_reads_only_as_far_as_the_window_lets_it() -> None:
    read = 0

    def endless() -> Iterator[int]:
        nonlocal read
        while True:
            read += 1
            yield read

    async with handle.open(read_in_thread(endless(), batch_size=8)) as results:
        await anext(results)
        for _ in range(50):  # the consumer stalls; the run goes on without it
            await anyio.lowlevel.checkpoint()
        # The window (256 items) and one hop's batch at most.
        assert read <= 256 + 8


async def test_read_in_thread_closes_the_iterable_in_a_worker_thread() -> None:
    closed_in: list[str] = []

    def rows() -> Iterator[int]:
        try:
            yield from range(10**9)
        finally:
            closed_in.append(threading.current_thread().name)

    assert await handle(read_in_thread(rows())).first() == 0
    assert len(closed_in) == 1
    assert closed_in[0] != threading.main_thread().name


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ((42,), TypeError),
        (([1],), None),
        (([1], 0), ValueError),
        (([1], "8"), TypeError),
        (([1], True), TypeError),
    ],
)
def test_read_in_thread_checks_its_arguments(
    arguments: tuple[Any, ...], error: type[Exception] | None
) -> None:
    if len(arguments) == 2:
        call = lambda: read_in_thread(arguments[0], batch_size=arguments[1])  # noqa: E731
    else:
        call = lambda: read_in_thread(arguments[0])  # noqa: E731
    if error is None:
        call()
    else:
        with pytest.raises(error, match=r"read_in_thread|batch_size"):
            call()

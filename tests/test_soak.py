"""Soak: many runs, one after another and many at once, leave nothing behind.

A module-scoped fixture per backend does the work once and measures; each
test then checks one kind of resource:

- live tasks of the event loop (back to the count before the runs);
- threads (``threading.active_count()``): anyio and trio keep idle worker
  threads for a while and reuse them, so the pool may grow to what the runs
  alive at one time can use (``THREAD_LIMIT`` each), but not with the number
  of runs;
- anyio memory object streams still alive after ``gc.collect()``;
- traced memory (``tracemalloc``): what run 1,000 holds over run 100, and
  the last round of concurrent runs over the first.

The runs rotate through every way to read a run: ``collect()``, an
``open()`` block, a plain ``async for`` to the end, a plain ``async for``
left by ``break`` (its host is stopped by the iterator's finalizer), and
as-completed mode.
"""

from __future__ import annotations

import gc
import threading
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from conveyor import Pipeline, batch_task, single_task

from .helpers import live_tasks, settle_tasks

CONSECUTIVE = 1000
MEASURED_FROM = 100  # the memory baseline: run 100
AT_ONCE = 100
ROUNDS = 3  # rounds of AT_ONCE concurrent runs, after a warm-up round
ITEMS = 10
THREAD_LIMIT = 2  # the thread stage's concurrency_limit: its pool per run
# Measured growth is 10-35 kB; a leak of a done host task per plain loop
# (about 1 kB a run) grows it by 400 kB and must fail.
MEMORY_BOUND = 256_000  # bytes


def memory_streams() -> int:
    """anyio memory object streams alive right now (after a full collection)."""
    gc.collect()
    kinds = (MemoryObjectSendStream, MemoryObjectReceiveStream)
    return sum(1 for thing in gc.get_objects() if isinstance(thing, kinds))


def traced_memory() -> int:
    gc.collect()
    current, _peak = tracemalloc.get_traced_memory()
    return current


def small_pipeline() -> Pipeline[int, Any]:
    @single_task
    async def double(x: int) -> int:
        await anyio.lowlevel.checkpoint()
        return 2 * x

    @single_task(run_in_thread=True, concurrency_limit=THREAD_LIMIT)
    def in_thread(x: int) -> int:
        return x + 1

    @batch_task(max_size=3)
    def pairs(xs: list[int]) -> list[int]:
        return xs

    @single_task
    async def spread(x: int) -> AsyncIterator[int]:
        yield x
        if x % 3 == 0:
            yield -x

    return double | in_thread | pairs | spread


def expected_output(data: list[int]) -> list[int]:
    out: list[int] = []
    for x in data:
        y = 2 * x + 1
        out.append(y)
        if y % 3 == 0:
            out.append(-y)
    return out


async def one_run(pipeline: Pipeline[int, Any], index: int) -> bool:
    """One run read in one of five ways (by ``index``); True if the output was right."""
    data = list(range(index, index + ITEMS))
    expected = expected_output(data)
    way = index % 5
    if way == 0:
        return await pipeline(data).collect() == expected
    if way == 1:
        async with pipeline.open(data) as stream:
            got = [x async for x in stream]
        return got == expected
    if way == 2:
        return [x async for x in pipeline(data)] == expected
    if way == 3:
        got = []
        async for x in pipeline(data):
            got.append(x)
            if len(got) == 2:
                break
        return got == expected[:2]
    return sorted(await pipeline.as_completed(data).collect()) == sorted(expected)


@dataclass
class Soak:
    """Measurements of one soak on one backend."""

    wrong: int = 0
    tasks_before: int = 0
    tasks_after: list[int] = field(default_factory=list)
    threads_before: int = 0  # before the first run
    threads_after: list[int] = field(default_factory=list)
    streams_before: int = 0
    streams_after: list[int] = field(default_factory=list)
    memory_at: list[int] = field(default_factory=list)
    thread_bound: int = 0


async def soak_consecutive() -> Soak:
    soak = Soak()
    pipeline = small_pipeline()
    soak.threads_before = threading.active_count()
    # A run left by ``break`` is stopped by its iterator's finalizer, soon but
    # not at once: it may still be finishing its calls while the next run
    # starts, so two runs can use threads at a time (one more run's worth of
    # threads is headroom; a leak of one thread per run would be hundreds).
    soak.thread_bound = soak.threads_before + 3 * THREAD_LIMIT
    assert await one_run(pipeline, 0)  # warm-up
    soak.tasks_before = await settle_tasks(live_tasks())
    soak.streams_before = memory_streams()
    for index in range(1, CONSECUTIVE + 1):
        soak.wrong += not await one_run(pipeline, index)
        if index == MEASURED_FROM:
            tracemalloc.start()  # what is allocated from here on and still held
        if index in (MEASURED_FROM, CONSECUTIVE):
            soak.tasks_after.append(await settle_tasks(soak.tasks_before))
            soak.threads_after.append(threading.active_count())
            soak.streams_after.append(memory_streams())
            soak.memory_at.append(traced_memory())
    return soak


async def soak_concurrent() -> Soak:
    soak = Soak()
    pipeline = small_pipeline()  # one pipeline object for every run

    async def round_of_runs(first: int) -> None:
        async def run(index: int) -> None:
            soak.wrong += not await one_run(pipeline, index)

        async with anyio.create_task_group() as tg:
            for index in range(first, first + AT_ONCE):
                tg.start_soon(run, index)

    baseline_tasks = live_tasks()
    soak.threads_before = threading.active_count()
    # Each run has its own thread limiter, so a round may use THREAD_LIMIT
    # threads per run, and the runs of the previous round that were left by
    # ``break`` (one in five) may still be finishing theirs.
    soak.thread_bound = soak.threads_before + (AT_ONCE + AT_ONCE // 5) * THREAD_LIMIT
    await round_of_runs(0)  # warm-up
    soak.tasks_before = await settle_tasks(baseline_tasks)
    soak.streams_before = memory_streams()
    tracemalloc.start()  # what is allocated from here on and still held
    for number in range(1, ROUNDS + 1):
        await round_of_runs(number * AT_ONCE)
        soak.tasks_after.append(await settle_tasks(soak.tasks_before))
        soak.threads_after.append(threading.active_count())
        soak.streams_after.append(memory_streams())
        soak.memory_at.append(traced_memory())
    return soak


def measure(backend: str, soak: Any) -> Soak:
    try:
        result: Soak = anyio.run(soak, backend=backend)
    finally:
        tracemalloc.stop()
    return result


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def consecutive(request: pytest.FixtureRequest) -> Soak:
    return measure(request.param, soak_consecutive)


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def concurrent(request: pytest.FixtureRequest) -> Soak:
    return measure(request.param, soak_concurrent)


# ---------------------------------------------------------------------------
# One run after another
# ---------------------------------------------------------------------------


def test_consecutive_runs_all_give_the_right_output(consecutive: Soak) -> None:
    assert consecutive.wrong == 0


def test_consecutive_runs_leave_no_task_behind(consecutive: Soak) -> None:
    assert consecutive.tasks_after == [consecutive.tasks_before] * 2


def test_consecutive_runs_do_not_grow_the_thread_count(consecutive: Soak) -> None:
    assert max(consecutive.threads_after) <= consecutive.thread_bound


def test_consecutive_runs_leave_no_memory_stream_behind(consecutive: Soak) -> None:
    assert consecutive.streams_after == [consecutive.streams_before] * 2


def test_consecutive_runs_keep_memory_flat(consecutive: Soak) -> None:
    at_100, at_1000 = consecutive.memory_at
    assert at_1000 - at_100 < MEMORY_BOUND


# ---------------------------------------------------------------------------
# Many runs of one pipeline object at once
# ---------------------------------------------------------------------------


def test_concurrent_runs_all_give_the_right_output(concurrent: Soak) -> None:
    assert concurrent.wrong == 0


def test_concurrent_runs_leave_no_task_behind(concurrent: Soak) -> None:
    assert concurrent.tasks_after == [concurrent.tasks_before] * ROUNDS


def test_concurrent_runs_do_not_grow_the_thread_count(concurrent: Soak) -> None:
    assert max(concurrent.threads_after) <= concurrent.thread_bound


def test_concurrent_runs_leave_no_memory_stream_behind(concurrent: Soak) -> None:
    assert concurrent.streams_after == [concurrent.streams_before] * ROUNDS


def test_concurrent_runs_keep_memory_flat(concurrent: Soak) -> None:
    first, *_, last = concurrent.memory_at  # after the first measured round, after the last
    assert last - first < MEMORY_BOUND

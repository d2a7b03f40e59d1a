"""Each call runs in its own context, as a task does (issue: reliability, section 2).

Every call, sync or async, inline or in a thread, a generator too, sees the
context of the run's start, never a value that another call set.
"""

from __future__ import annotations

import contextvars
import multiprocessing
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import anyio
import pytest

from conveyor import PipelineContext, batch_task, get_current_context, single_task

from . import executor_functions as fn

pytestmark = pytest.mark.anyio

user: contextvars.ContextVar[str] = contextvars.ContextVar("user", default="anonymous")


async def handle_async(x: int) -> tuple[int, str]:
    if x == 0:
        user.set("admin")  # only item 0 is elevated
    await anyio.sleep(0.001)
    return (x, user.get())


async def handle_async_no_wait(x: int) -> tuple[int, str]:
    if x == 0:
        user.set("admin")
    return (x, user.get())


def handle_sync(x: int) -> tuple[int, str]:
    if x == 0:
        user.set("admin")
    return (x, user.get())


EXPECTED = [(0, "admin"), (1, "anonymous"), (2, "anonymous"), (3, "anonymous")]


@pytest.mark.parametrize(
    "function", [handle_async, handle_async_no_wait, handle_sync], ids=["async", "eager", "sync"]
)
async def test_a_value_one_call_sets_is_not_seen_by_the_next(function: object) -> None:
    assert await single_task(function)(range(4)).collect() == EXPECTED


async def test_thread_calls_are_isolated_too() -> None:
    task = single_task(handle_sync, run_in_thread=True, concurrency_limit=1)
    assert await task(range(4)).collect() == EXPECTED


async def test_calls_with_a_policy_are_isolated_too() -> None:
    task = single_task(handle_async, retry_attempts=2, retry_delay=0)
    assert await task(range(4)).collect() == EXPECTED


async def test_many_quick_sync_calls_are_isolated_on_the_fastest_path() -> None:
    # Thousands of quick plain calls: the stage runs them under map().
    def mark(x: int) -> str:
        seen = user.get()
        if x % 100 == 0:
            user.set(f"set by {x}")
        return seen

    assert set(await single_task(mark)(range(5_000)).collect()) == {"anonymous"}


async def test_generators_are_isolated_from_each_other() -> None:
    @single_task
    async def agen(x: int) -> AsyncIterator[tuple[int, str]]:
        if x == 0:
            user.set("admin")
        await anyio.sleep(0.001)
        yield (x, user.get())

    @single_task
    def gen(pair: tuple[int, str]) -> Iterator[tuple[int, str, str]]:
        yield (*pair, user.get())
        if pair[0] == 1:
            user.set("leaked?")

    result = await (agen | gen)(range(3)).collect()
    assert result == [
        (0, "admin", "anonymous"),
        (1, "anonymous", "anonymous"),
        (2, "anonymous", "anonymous"),
    ]


async def test_the_run_start_context_is_what_every_call_sees() -> None:
    token = user.set("caller")
    try:
        result = await single_task(handle_sync)(range(4)).collect()
    finally:
        user.reset(token)
    assert result == [(0, "admin"), (1, "caller"), (2, "caller"), (3, "caller")]


async def test_batch_calls_are_isolated() -> None:
    @batch_task(max_size=2)
    def batch(items: list[int]) -> list[str]:
        seen = user.get()
        user.set(f"batch {items}")
        return [seen] * len(items)

    assert await batch(range(6)).collect() == ["anonymous"] * 6


async def test_a_call_that_returns_a_generator_keeps_its_own_context_for_it() -> None:
    async def values_as(x: int) -> AsyncIterator[tuple[int, str]]:
        yield (x, user.get())

    async def elevate_then_expand(x: int) -> AsyncIterator[tuple[int, str]]:
        if x == 0:
            user.set("admin")  # the call's own context: its generator sees it
        return values_as(x)

    results = await single_task(elevate_then_expand)(range(100)).collect()
    assert results == [(0, "admin")] + [(x, "anonymous") for x in range(1, 100)]


# -- calls in an executor -------------------------------------------------------


async def test_calls_in_a_thread_pool_you_own_are_isolated_and_see_the_runs_context() -> None:
    token = user.set("alice")  # where the run is opened
    try:
        with ThreadPoolExecutor(1) as one_thread:  # every call on the same thread
            task = single_task(handle_sync, executor=one_thread, chunk_size=1)
            expected = [(0, "admin"), (1, "alice"), (2, "alice"), (3, "alice")]
            assert await task(range(4)).collect() == expected
            assert await task(range(1, 3)).collect() == expected[1:3]  # the next run too
    finally:
        user.reset(token)


def run_context(x: int) -> PipelineContext | None:
    return get_current_context()


async def test_get_current_context_in_a_thread_pool_you_own_is_the_runs() -> None:
    with ThreadPoolExecutor(1) as one_thread:
        task = single_task(run_context, executor=one_thread).with_context(tenant="acme")
        contexts = await task(range(2)).collect()
    assert [context.data for context in contexts] == [{"tenant": "acme"}] * 2


@pytest.mark.parametrize("where", ["process", "process pool"])
async def test_calls_in_processes_are_isolated_from_each_other(where: str) -> None:
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as one_process:  # all in one worker
        executor: Any = one_process if where == "process pool" else "process"
        task = single_task(fn.remember, executor=executor, chunk_size=4)
        assert await task(range(8)).collect() == []  # None (dropped): nothing seen

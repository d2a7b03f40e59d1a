"""Execution semantics: ordering, concurrency, limits, context, side inputs (api.md section 4)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from conveyor import (
    AsyncStream,
    PipelineContext,
    batch_task,
    get_current_context,
    single_task,
)

from .conftest import virtual_clock
from .helpers import Tracker

pytestmark = pytest.mark.anyio

GUIDE_DELAYS = [0.1, 0.2, 0.3, 0.4, 0.5, 2.0, 0.7, 0.8]


@single_task
async def sleep_for(item: tuple[int, float]) -> int:
    number, delay = item
    await anyio.sleep(delay)
    return number


async def arrivals(stream: AsyncStream[int]) -> list[tuple[int, float]]:
    start = anyio.current_time()
    return [(item, round(anyio.current_time() - start, 6)) async for item in stream]


@virtual_clock
async def test_ordered_mode_releases_each_result_as_soon_as_order_allows() -> None:
    result = await arrivals(sleep_for(list(enumerate(GUIDE_DELAYS, 1))))
    assert result == [
        (1, 0.1),
        (2, 0.2),
        (3, 0.3),
        (4, 0.4),
        (5, 0.5),
        (6, 2.0),
        (7, 2.0),
        (8, 2.0),
    ]


@virtual_clock
async def test_as_completed_mode_releases_each_result_when_it_is_done() -> None:
    result = await arrivals(sleep_for.as_completed(list(enumerate(GUIDE_DELAYS, 1))))
    assert result == [
        (1, 0.1),
        (2, 0.2),
        (3, 0.3),
        (4, 0.4),
        (5, 0.5),
        (7, 0.7),
        (8, 0.8),
        (6, 2.0),
    ]


@virtual_clock
async def test_next_stage_starts_an_item_as_soon_as_it_is_produced_in_ordered_mode() -> None:
    started: dict[int, float] = {}

    @single_task
    async def second(x: int) -> int:
        started[x] = anyio.current_time()
        return x

    start = anyio.current_time()
    items = [(0, 1.0), (1, 0.1)]
    assert await (sleep_for | second)(items).collect() == [0, 1]
    assert round(started[1] - start, 6) == 0.1  # not held back behind item 0
    assert round(started[0] - start, 6) == 1.0


async def test_stages_work_concurrently_with_each_other() -> None:
    second_stage_saw_item_0 = anyio.Event()

    @single_task
    async def first(x: int) -> int:
        if x == 1:
            await second_stage_saw_item_0.wait()  # deadlocks unless stage 2 runs meanwhile
        return x

    @single_task
    async def second(x: int) -> int:
        if x == 0:
            second_stage_saw_item_0.set()
        return x

    with anyio.fail_after(10):
        assert await (first | second)([0, 1]).collect() == [0, 1]


async def test_single_task_runs_small_inputs_all_at_once() -> None:
    tracker = Tracker()
    all_started = anyio.Event()

    @single_task
    async def wait_for_all(x: int) -> int:
        tracker.enter(x)
        if len(tracker.started) == 8:
            all_started.set()
        await all_started.wait()
        tracker.leave(x)
        return x

    with anyio.fail_after(10):
        assert await wait_for_all(range(8)).collect() == list(range(8))
    assert tracker.peak == 8


@virtual_clock
@pytest.mark.parametrize(
    ("limit", "expected_peak"),
    [
        pytest.param(None, 256, id="default-window-256"),
        pytest.param(3, 3, id="concurrency-limit-caps"),
        pytest.param(400, 400, id="large-limit-raises-the-window"),
    ],
)
async def test_calls_in_flight_reach_but_never_pass_the_limit(
    limit: int | None, expected_peak: int
) -> None:
    tracker = Tracker()

    @single_task(concurrency_limit=limit)
    async def slow(x: int) -> int:
        tracker.enter(x)
        await anyio.sleep(0.01)
        tracker.leave(x)
        return x

    assert await slow(range(1000)).collect() == list(range(1000))
    assert tracker.peak == expected_peak


@virtual_clock
@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "as-completed"])
@pytest.mark.parametrize(
    "waits",
    [
        pytest.param(lambda x: 0.01, id="every-call-waits"),
        pytest.param(lambda x: None, id="no-call-waits"),
        pytest.param(lambda x: 0.01 if x % 3 == 0 else None, id="some-calls-wait"),
        pytest.param(lambda x: 0 if x % 2 else None, id="some-calls-checkpoint"),
    ],
)
async def test_each_item_starts_exactly_one_call(waits: Any, ordered: bool) -> None:
    started: list[int] = []

    @single_task(concurrency_limit=8)
    async def work(x: int) -> int:
        started.append(x)  # a side effect before the first await
        delay = waits(x)
        if delay is not None:
            await anyio.sleep(delay)
        return x

    stream = work(range(500))
    results = await (stream if ordered else stream.as_completed()).collect()
    assert sorted(results) == list(range(500))
    assert sorted(started) == list(range(500))


def spread_some(x: int) -> Any:
    """Every fourth item becomes three values (a list: a node of its own), the others one."""
    return [x * 10 + k for k in range(3)] if x % 4 == 0 else x * 10


@virtual_clock
@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "as-completed"])
async def test_calls_that_finish_together_pass_on_every_value_in_its_place(
    ordered: bool,
) -> None:
    # Calls with the same delay finish in the same scheduler pass (trio runs
    # half of its passes in reverse), and their results travel on together:
    # none may be lost, doubled or moved, skipped calls and the values of a
    # list result included, and the admission window must get every token
    # back (2,000 items through a window of 256: a lost token would hang).
    @single_task(on_error="skip_item")
    async def wait_then_check(v: int) -> int:
        await anyio.sleep(1.0 if v % 2 else 2.0)
        if v % 7 == 3:
            raise ValueError(v)
        return v

    @single_task
    async def plus_one(v: int) -> int:
        await anyio.sleep(0.5)
        return v + 1

    pipeline = single_task(spread_some) | wait_then_check | plus_one
    values = [v for x in range(2000) for v in ([spread_some(x)] if x % 4 else spread_some(x))]
    expected = [v + 1 for v in values if v % 7 != 3]
    stream = pipeline(range(2000)) if ordered else pipeline.as_completed(range(2000))
    results = await stream.collect()
    assert (results if ordered else sorted(results)) == (expected if ordered else sorted(expected))
    assert len(stream.failures) == len(values) - len(expected)


def mixed_result(x: int) -> Any:
    """A quick sync function whose results change kind from call to call."""
    kind = x % 7
    if kind == 0:
        return [x, -x]  # expands to two values
    if kind == 1:
        return None  # filtered out
    if kind == 2:
        return str(x)
    if kind == 3:
        return float(x)
    if kind == 4:
        return (x,)
    return x


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "as-completed"])
@pytest.mark.parametrize("first", [0, 5, 700], ids=["list-first", "int-first", "long-plain-run"])
async def test_quick_sync_results_of_mixed_kinds_each_follow_their_own_rule(
    ordered: bool, first: int
) -> None:
    # Quick sync calls run many at a time; results of different kinds in the
    # same run (plain values, lists, None) must still each be treated as itself.
    # "long-plain-run": 700 plain ints first, so the rest arrive in the quick path.
    items = [*(7 * k + 5 for k in range(first)), *range(first, first + 2000)]
    stage = single_task(mixed_result)
    stream = stage(items)
    results = await (stream if ordered else stream.as_completed()).collect()
    expected = []
    for x in items:
        r = mixed_result(x)
        expected.extend(r if isinstance(r, list) else [] if r is None else [r])
    assert (results if ordered else sorted(results, key=repr)) == (
        expected if ordered else sorted(expected, key=repr)
    )


@virtual_clock
async def test_max_parallelism_caps_calls_across_the_whole_run() -> None:
    tracker = Tracker()

    @single_task
    async def first(x: int) -> int:
        tracker.enter(x)
        await anyio.sleep(0.001)
        tracker.leave(x)
        return x

    @single_task
    async def second(x: int) -> int:
        tracker.enter(-x)
        await anyio.sleep(0.001)
        tracker.leave(-x)
        return x

    pipeline = (first | second).with_context(max_parallelism=2)
    assert await pipeline(range(30)).collect() == list(range(30))
    assert tracker.peak == 2


async def test_each_run_gets_its_own_context_with_a_fresh_id() -> None:
    seen: list[PipelineContext | None] = []

    @single_task
    async def look(x: int) -> int:
        seen.append(get_current_context())
        return x

    pipeline = look.with_context(tenant="acme")
    await pipeline([1, 2]).collect()
    await pipeline([3]).collect()
    contexts = [c for c in seen if c is not None]
    assert len(contexts) == 3
    assert contexts[0] is contexts[1]
    assert contexts[0].pipeline_id != contexts[2].pipeline_id
    assert contexts[0].data == {"tenant": "acme"}
    assert get_current_context() is None


async def test_context_data_is_shared_by_the_tasks_of_a_run_only() -> None:
    @single_task
    async def write(x: int) -> int:
        context = get_current_context()
        assert context is not None
        context.data.setdefault("seen", []).append(x)
        return x

    @single_task
    async def read(x: int) -> int:
        context = get_current_context()
        assert context is not None
        return len(context.data["seen"])

    pipeline = write | read
    first = await pipeline([1, 2, 3]).collect()
    second = await pipeline([1]).collect()
    assert first[-1] == 3
    assert second == [1]
    assert pipeline.context.data == {}


async def test_context_reaches_calls_running_in_threads() -> None:
    @single_task(run_in_thread=True)
    def look(x: int) -> str | None:
        context = get_current_context()
        return context.pipeline_id if context else None

    ids = await look([1, 2, 3]).collect()
    assert len(set(ids)) == 1
    assert ids[0] is not None


async def test_concurrent_runs_see_their_own_context() -> None:
    @single_task
    async def tag(x: int) -> tuple[int, str]:
        await anyio.sleep(0.001)
        context = get_current_context()
        assert context is not None
        return x, context.data["name"]

    results: dict[str, list[tuple[int, str]]] = {}

    async def run(name: str) -> None:
        results[name] = await tag.with_context(name=name)(range(20)).collect()

    async with anyio.create_task_group() as tg:
        for name in ("a", "b", "c"):
            tg.start_soon(run, name)
    for name, values in results.items():
        assert {value[1] for value in values} == {name}


async def test_coroutine_side_input_is_awaited_once_across_runs() -> None:
    awaited = 0

    async def config() -> int:
        nonlocal awaited
        awaited += 1
        return 10

    @single_task
    def add(x: int, amount: int) -> int:
        return x + amount

    task = add.with_inputs(config())
    assert await task([1]).collect() == [11]
    assert await task([2]).collect() == [12]
    assert awaited == 1


async def test_coroutine_function_side_input_is_called_per_run() -> None:
    calls = 0

    async def fresh() -> int:
        nonlocal calls
        calls += 1
        return calls

    @single_task
    def add(x: int, amount: int) -> int:
        return x + amount

    task = add.with_inputs(fresh)
    assert await task([0]).collect() == [1]
    assert await task([0]).collect() == [2]


async def test_stream_side_input_passes_its_first_item() -> None:
    @single_task
    def add(x: int, amount: int) -> int:
        return x + amount

    @single_task
    def thousand(x: int) -> int:
        return x * 1000

    task = add.with_inputs(thousand([1, 2]))
    assert await task([1, 2]).collect() == [1001, 1002]
    assert await task([3]).collect() == [1003]  # resolved once, reused


async def test_other_async_iterators_are_passed_as_they_are() -> None:
    async def tokens() -> AsyncIterator[str]:
        for token in ("a", "b", "c"):
            yield token

    @single_task(concurrency_limit=1)
    async def label(x: int, source: AsyncIterator[str]) -> str:
        return f"{await anext(source)}{x}"

    source = tokens()
    try:
        assert await label.with_inputs(source)([1, 2, 3]).collect() == ["a1", "b2", "c3"]
    finally:
        await source.aclose()  # type: ignore[attr-defined]


async def test_batch_side_inputs() -> None:
    @batch_task(max_size=2)
    def scaled(batch: list[int], factor: int) -> int:
        return sum(batch) * factor

    assert await scaled.with_inputs(10)([1, 2, 3]).collect() == [30, 30]

"""Faults and cancellation at random points; afterwards nothing of the run is left.

Each case builds a random pipeline from a fixed seed: 1-4 stages, single
tasks (async, sync, returning a list, async generators) and batch tasks, all
passing their items through unchanged so that the ordered output is the
input, and every call tracked (started, and its ``finally`` ran). The source
is a generator or an async generator that records when it is closed. Then a
fault hits at a seeded position: the consumer cancels its own scope, a
virtual-time ``move_on_after`` fires, the loop breaks or raises, a stage
fails, the source fails, or a function running in a worker thread fails.

After every case, with ``async with pipeline.open(...)`` and with plain
``async for``: no worker of the run is alive, every ``finally`` in user code
ran, the source was closed, what was released is a prefix of the input
(ordered mode) or distinct input items (as-completed mode), and an error
arrives as the very exception that was raised, not an ExceptionGroup.
"""

from __future__ import annotations

import functools
import operator
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from conveyor import Pipeline, batch_task, single_task

from .conftest import virtual_clock
from .helpers import Tracker, live_tasks, settle_tasks

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

SEEDS = [pytest.param(seed, id=f"seed{seed}") for seed in range(4)]
STYLES = pytest.mark.parametrize("style", ["open", "plain"])
COUNT = 300  # more than the default in-flight window (256)
DEADLOCK = 3600.0  # virtual seconds: a run that hangs fails at once instead


class InjectedError(Exception):
    """The fault these tests inject."""


@dataclass
class Scenario:
    """One seeded run: its pipeline, source, and what the user's code recorded."""

    pipeline: Pipeline[Any, Any]
    source: Any
    ordered: bool
    stages: list[str]
    tracker: Tracker = field(default_factory=Tracker)
    fail_on: int = COUNT  # the item a stage fails on, or the one the source fails at
    closed: list[bool] = field(default_factory=list)
    seen: list[Any] = field(default_factory=list)

    def check_released(self, limit: int = COUNT) -> None:
        """What came out is a prefix of the input (ordered) or distinct input items."""
        if self.ordered:
            assert self.seen == list(range(len(self.seen)))
            assert len(self.seen) <= limit
        else:
            assert len(set(self.seen)) == len(self.seen)
            assert set(self.seen) <= set(range(COUNT))


def stage(
    kind: str,
    tracker: Tracker,
    delay: float,
    fail_on: int | None,
    error: BaseException | None,
    max_size: int,
) -> Any:
    """A pass-through task of ``kind``; it raises ``error`` on item ``fail_on``."""

    def check(item: Any) -> None:
        items = item if isinstance(item, list) else [item]
        if fail_on in items:
            assert error is not None
            raise error

    async def pause(item: Any) -> None:
        number = item[0] if isinstance(item, list) else item
        await anyio.sleep(delay * (number % 3))

    if kind == "async":

        @single_task
        async def async_stage(item: int) -> int:
            tracker.enter(item)
            try:
                await pause(item)
                check(item)
                return item
            finally:
                tracker.leave(item)

        return async_stage

    if kind == "sync":

        @single_task(concurrency_limit=4)
        def sync_stage(item: int) -> list[int]:
            tracker.enter(item)
            try:
                check(item)
                return [item]
            finally:
                tracker.leave(item)

        return sync_stage

    if kind == "thread":

        @single_task(run_in_thread=True)
        def thread_stage(item: int) -> int:
            tracker.enter(item)
            try:
                check(item)
                return item
            finally:
                tracker.leave(item)

        return thread_stage

    if kind == "agen":

        @single_task(concurrency_limit=8)
        async def agen_stage(item: int) -> AsyncIterator[int]:
            tracker.enter(item)
            try:
                await pause(item)
                check(item)
                yield item
            finally:
                tracker.leave(item)

        return agen_stage

    @batch_task(max_size=max_size)
    async def batch_stage(items: list[int]) -> list[int]:
        tracker.enter(tuple(items))
        try:
            await pause(items)
            check(items)
            return items
        finally:
            tracker.leave(tuple(items))

    return batch_stage


def scenario(
    seed: int,
    *,
    stage_error: BaseException | None = None,
    source_error: BaseException | None = None,
    source_kind: str | None = None,
    kinds: tuple[str, ...] = ("async", "sync", "agen", "batch"),
    delay: float = 0.01,
    source_pause: float = 0.0,
) -> Scenario:
    """The pipeline and source for ``seed``; ``stage_error`` goes into one random stage."""
    rng = random.Random(seed)
    tracker = Tracker()
    closed: list[bool] = []
    count = rng.randint(1, 4)
    names = [rng.choice(kinds) for _ in range(count)]
    failing = rng.randrange(count) if stage_error is not None else None
    if failing is not None and "thread" in kinds:
        names[failing] = "thread"
    fail_on = rng.randrange(COUNT)
    tasks = [
        stage(
            name,
            tracker,
            delay,
            fail_on if index == failing else None,
            stage_error,
            max_size=rng.randint(1, 5),
        )
        for index, name in enumerate(names)
    ]
    ordered = rng.random() < 0.75
    pipeline = functools.reduce(operator.or_, tasks).with_execution_mode(
        "ordered" if ordered else "as_completed"
    )
    kind = source_kind or rng.choice(["gen", "agen"])
    raise_at = rng.randrange(COUNT) if source_error is not None else None

    def generator() -> Iterator[int]:
        try:
            for number in range(COUNT):
                if number == raise_at:
                    assert source_error is not None
                    raise source_error
                yield number
        finally:
            closed.append(True)

    async def async_generator() -> AsyncIterator[int]:
        try:
            for number in range(COUNT):
                if source_pause:
                    await anyio.sleep(source_pause)
                if number == raise_at:
                    assert source_error is not None
                    raise source_error
                yield number
        finally:
            closed.append(True)

    source = generator() if kind == "gen" else async_generator()
    limit = fail_on if failing is not None else raise_at if raise_at is not None else COUNT
    return Scenario(pipeline, source, ordered, names, tracker, limit, closed)


async def consume(
    scn: Scenario,
    style: str,
    *,
    at: int = -1,
    action: str = "none",
    error: BaseException | None = None,
    scope: anyio.CancelScope | None = None,
) -> None:
    """Read the run with ``style``; after ``at`` items, ``break``, raise or cancel."""

    def body(item: Any) -> bool:
        scn.seen.append(item)
        if len(scn.seen) == at:
            if action == "raise":
                assert error is not None
                raise error
            if action == "cancel":
                assert scope is not None
                scope.cancel()
            return action == "break"
        return False

    with anyio.fail_after(DEADLOCK):
        if style == "open":
            async with scn.pipeline.open(scn.source) as stream:
                async for item in stream:
                    if body(item):
                        break
        else:
            async for item in scn.pipeline(scn.source):
                if body(item):
                    break


async def assert_nothing_left(scn: Scenario, baseline: int, *, at_once: bool) -> None:
    """No worker alive (``at_once``: already; else soon), every finally ran, source closed."""
    if at_once:
        assert live_tasks() == baseline
    else:  # a plain loop left by break or by its body: the dropped iterator's finalizer
        assert await settle_tasks(baseline) == baseline
    assert scn.tracker.running == 0
    assert sorted(map(str, scn.tracker.cleaned)) == sorted(map(str, scn.tracker.started))
    assert scn.closed == [True]


# ---------------------------------------------------------------------------
# The consumer stops the run
# ---------------------------------------------------------------------------


@virtual_clock
@STYLES
@pytest.mark.parametrize("seed", SEEDS)
async def test_consumer_cancelling_its_own_scope_stops_the_run(seed: int, style: str) -> None:
    scn = scenario(seed)
    at = random.Random(seed).randint(1, 200)
    baseline = live_tasks()
    with anyio.CancelScope() as scope:
        await consume(scn, style, at=at, action="cancel", scope=scope)
        pytest.fail("the cancellation did not reach the consumer")  # pragma: no cover
    assert scope.cancelled_caught
    assert len(scn.seen) >= at
    scn.check_released()
    await assert_nothing_left(scn, baseline, at_once=True)


#: Iteration is a cancel point at least this often (documented in docs/concurrency.md).
CANCEL_CHECK_EVERY = 32


@virtual_clock
@STYLES
@pytest.mark.parametrize("seed", SEEDS)
async def test_consumer_stops_within_a_bounded_number_of_results_after_cancelling(
    seed: int, style: str
) -> None:
    # Iteration is a cancel point at least every CANCEL_CHECK_EVERY results
    # (checking on every result would halve throughput), so a consumer that
    # cancels its own scope gets at most that many results already released.
    scn = scenario(seed)
    at = random.Random(seed).randint(1, 200)
    with anyio.CancelScope() as scope:
        await consume(scn, style, at=at, action="cancel", scope=scope)
    assert scope.cancelled_caught
    assert at <= len(scn.seen) <= at + CANCEL_CHECK_EVERY


def work_for(seconds: float) -> None:
    """Busy the CPU for ``seconds``: a consumer's work that never awaits."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.mark.parametrize("style", ["open", "plain"])
async def test_a_deadline_reaches_a_consumer_busy_with_ready_results(style: str) -> None:
    # Each item expands to 50 values, so the window holds thousands of ready
    # results, and the consumer works 0.2 ms on each without awaiting: it
    # must still let the event loop run often enough to see its deadline
    # expire (seconds late when only cancel points were checked). Real time,
    # with a bound 100 times what the check needs.
    @single_task
    def fan(x: int) -> list[int]:
        return [x] * 50

    late = 0
    with anyio.move_on_after(0.05) as scope:
        if style == "open":
            async with fan.open(range(100_000)) as results:
                async for _ in results:
                    late += anyio.current_time() > scope.deadline
                    work_for(0.0002)
        else:
            async for _ in fan(range(100_000)):
                late += anyio.current_time() > scope.deadline
                work_for(0.0002)
    assert scope.cancelled_caught
    assert late * 0.0002 < 0.5


@virtual_clock
@STYLES
@pytest.mark.parametrize("seed", SEEDS)
async def test_move_on_after_around_the_consumer_stops_the_run(seed: int, style: str) -> None:
    # The source takes 0.01 s per item: 3 virtual seconds for all of it.
    scn = scenario(seed, source_kind="agen", source_pause=0.01)
    timeout = random.Random(seed).uniform(0.05, 2.0)
    baseline = live_tasks()
    with anyio.move_on_after(timeout) as scope:
        await consume(scn, style)
        pytest.fail("the run outlived its deadline")  # pragma: no cover
    assert scope.cancelled_caught
    scn.check_released(limit=int(timeout / 0.01) + 1)
    await assert_nothing_left(scn, baseline, at_once=True)


@virtual_clock
@STYLES
@pytest.mark.parametrize("seed", SEEDS)
async def test_break_at_a_random_position_stops_the_run(seed: int, style: str) -> None:
    scn = scenario(seed)
    at = random.Random(seed).randint(1, COUNT)
    baseline = live_tasks()
    await consume(scn, style, at=at, action="break")
    assert len(scn.seen) == at
    scn.check_released()
    await assert_nothing_left(scn, baseline, at_once=style == "open")


@virtual_clock
@STYLES
@pytest.mark.parametrize("seed", SEEDS)
async def test_exception_in_the_loop_body_propagates_unchanged(seed: int, style: str) -> None:
    scn = scenario(seed)
    at = random.Random(seed).randint(1, COUNT)
    error = InjectedError("in the loop body")
    baseline = live_tasks()
    with pytest.raises(InjectedError) as caught:
        await consume(scn, style, at=at, action="raise", error=error)
    assert caught.value is error
    assert len(scn.seen) == at
    scn.check_released()
    await assert_nothing_left(scn, baseline, at_once=style == "open")


# ---------------------------------------------------------------------------
# The run fails
# ---------------------------------------------------------------------------


@virtual_clock
@STYLES
@pytest.mark.parametrize("seed", SEEDS)
async def test_failure_in_a_random_stage_surfaces_as_the_original_exception(
    seed: int, style: str
) -> None:
    error = InjectedError("in a stage")
    scn = scenario(seed, stage_error=error)
    baseline = live_tasks()
    with pytest.raises(InjectedError) as caught:
        await consume(scn, style)
    assert caught.value is error
    scn.check_released(limit=scn.fail_on)
    await assert_nothing_left(scn, baseline, at_once=True)


@virtual_clock
@STYLES
@pytest.mark.parametrize("source_kind", ["gen", "agen"])
@pytest.mark.parametrize("seed", SEEDS)
async def test_failure_inside_the_source_surfaces_as_the_original_exception(
    seed: int, source_kind: str, style: str
) -> None:
    error = InjectedError("in the source")
    scn = scenario(seed, source_error=error, source_kind=source_kind)
    baseline = live_tasks()
    with pytest.raises(InjectedError) as caught:
        await consume(scn, style)
    assert caught.value is error
    scn.check_released(limit=scn.fail_on)
    await assert_nothing_left(scn, baseline, at_once=True)


@STYLES
@pytest.mark.parametrize("seed", SEEDS)
async def test_failure_in_a_thread_surfaces_as_the_original_exception(
    seed: int, style: str
) -> None:
    # Real time (threads outrun a virtual clock); the stages do not sleep.
    error = InjectedError("in a worker thread")
    scn = scenario(seed, stage_error=error, kinds=("thread", "async", "sync", "batch"), delay=0)
    assert "thread" in scn.stages
    baseline = live_tasks()
    with pytest.raises(InjectedError) as caught:
        await consume(scn, style)
    assert caught.value is error
    scn.check_released(limit=scn.fail_on)
    await assert_nothing_left(scn, baseline, at_once=True)

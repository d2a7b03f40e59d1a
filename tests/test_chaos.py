"""Chaos: random pipelines stopped at random points in random ways (issue: reliability).

Hypothesis draws pipelines of single, batch, sync, async, generator and
thread stages with random limits, a random failure, and a random way and
moment to stop (break, an exception in the loop body, a cancellation, a
failing call, or none). After each run:

- calls in flight never exceeded any stage's limit;
- no call started after the stop (api.md §6);
- every user ``finally`` ran, and nothing of the run is left running;
- every exception raised reached the program exactly once, as itself;
- no context variable value leaked from one call to another.
"""

from __future__ import annotations

import contextvars
import functools
import operator
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor import batch_task, single_task

from .helpers import live_tasks, settle_tasks

pytestmark = pytest.mark.timeout(600)

marker: contextvars.ContextVar[Any] = contextvars.ContextVar("marker", default=None)

KINDS = ["sync", "async", "agen", "gen", "thread", "batch"]
HOW = ["none", "break", "raise", "cancel", "fail"]


class Chaos(Exception):
    """A failure a stage raises, or the consumer's own."""


@dataclass
class Log:
    stopped: bool = False
    active: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)
    started_after_stop: list[Any] = field(default_factory=list)
    entered: int = 0
    left: int = 0
    leaks: list[Any] = field(default_factory=list)
    raised: list[BaseException] = field(default_factory=list)

    def enter(self, name: str, item: Any) -> None:
        if self.stopped:
            self.started_after_stop.append((name, item))
        if marker.get() is not None:
            self.leaks.append((name, item, marker.get()))
        marker.set((name, item))  # never to be seen by another call
        self.entered += 1
        self.active[name] = self.active.get(name, 0) + 1
        self.peak[name] = max(self.peak.get(name, 0), self.active[name])

    def leave(self, name: str) -> None:
        self.active[name] -= 1
        self.left += 1

    def fail(self, item: Any) -> None:
        error = Chaos(f"stage failure on {item!r}")
        self.raised.append(error)
        self.stopped = True  # the stop: this failure ends the run
        raise error


@dataclass(frozen=True)
class StagePlan:
    kind: str
    limit: int | None
    size: int
    pause: bool


def build(index: int, plan: StagePlan, log: Log, fail_on: Any) -> Any:
    name = f"s{index}"

    def check(item: Any) -> None:
        if fail_on is not None and (
            item == fail_on or (isinstance(item, list) and fail_on in item)
        ):
            log.fail(item)

    if plan.kind == "sync":

        def sync_stage(item: Any) -> Any:
            log.enter(name, item)
            try:
                check(item)
                return item
            finally:
                log.leave(name)

        return single_task(sync_stage, concurrency_limit=plan.limit, task_name=name)
    if plan.kind == "thread":

        def thread_stage(item: Any) -> Any:
            log.enter(name, item)
            try:
                check(item)
                return item
            finally:
                log.leave(name)

        return single_task(
            thread_stage, run_in_thread=True, concurrency_limit=plan.limit or 4, task_name=name
        )
    if plan.kind == "async":

        async def async_stage(item: Any) -> Any:
            log.enter(name, item)
            try:
                if plan.pause:
                    await anyio.sleep(0.0005)
                check(item)
                return item
            finally:
                log.leave(name)

        return single_task(async_stage, concurrency_limit=plan.limit, task_name=name)
    if plan.kind == "agen":

        async def agen_stage(item: Any) -> AsyncIterator[Any]:
            log.enter(name, item)
            try:
                if plan.pause:
                    await anyio.sleep(0.0005)
                check(item)
                yield item
            finally:
                log.leave(name)

        return single_task(agen_stage, concurrency_limit=plan.limit, task_name=name)
    if plan.kind == "gen":

        def gen_stage(item: Any) -> Iterator[Any]:
            log.enter(name, item)
            try:
                check(item)
                yield item
            finally:
                log.leave(name)

        return single_task(gen_stage, concurrency_limit=plan.limit, task_name=name)

    async def batch_stage(items: list[Any]) -> list[Any]:
        log.enter(name, tuple(items))
        try:
            if plan.pause:
                await anyio.sleep(0.0005)
            check(items)
            return items
        finally:
            log.leave(name)

    return batch_task(max_size=plan.size, task_name=name)(batch_stage)


stage_plans = st.builds(
    StagePlan,
    kind=st.sampled_from(KINDS),
    limit=st.one_of(st.none(), st.integers(1, 6)),
    size=st.integers(1, 4),
    pause=st.booleans(),
)


@st.composite
def chaos_cases(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "stages": draw(st.lists(stage_plans, min_size=1, max_size=3)),
        "count": draw(st.integers(1, 400)),
        "how": draw(st.sampled_from(HOW)),
        "at": draw(st.integers(1, 300)),
        "mode": draw(st.sampled_from(["ordered", "as_completed"])),
        "style": draw(st.sampled_from(["open", "plain"])),
        "backend": draw(st.sampled_from(["asyncio", "trio"])),
    }


async def run_case(case: dict[str, Any], log: Log) -> None:
    how, at = case["how"], case["at"]
    fail_on = at if how == "fail" else None
    tasks = [build(i, plan, log, fail_on) for i, plan in enumerate(case["stages"])]
    pipeline = functools.reduce(operator.or_, tasks).with_execution_mode(case["mode"])
    consumer_error = Chaos("the consumer's own")
    seen = 0
    baseline = live_tasks()
    caught: list[BaseException] = []

    async def body(scope: anyio.CancelScope) -> bool:
        nonlocal seen
        seen += 1
        if seen == at and how in ("break", "raise", "cancel"):
            log.stopped = True
            if how == "raise":
                log.raised.append(consumer_error)
                raise consumer_error
            if how == "cancel":
                scope.cancel()
            return how == "break"
        return False

    with anyio.CancelScope() as scope:
        try:
            if case["style"] == "open":
                async with pipeline.open(range(case["count"])) as results:
                    async for _ in results:
                        if await body(scope):
                            break
            else:
                async for _ in pipeline(range(case["count"])):
                    if await body(scope):
                        break
        except Chaos as exc:
            caught.append(exc)
    # Every exception raised reached the program exactly once, as itself.
    if how in ("raise", "fail") and log.raised:
        assert len(caught) == 1
        assert caught[0] in log.raised
    else:
        assert caught == []
    assert await settle_tasks(baseline) == baseline


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=chaos_cases())
def test_stopping_anywhere_keeps_every_promise(case: dict[str, Any]) -> None:
    log = Log()
    anyio.run(run_case, case, log, backend=case["backend"])
    for index, plan in enumerate(case["stages"]):
        name = f"s{index}"
        limit = plan.limit or (4 if plan.kind == "thread" else None)
        if plan.kind == "batch":
            limit = 1
        if limit is not None:
            assert log.peak.get(name, 0) <= limit, name
    # A call handed to a worker thread before the stop may begin there. And
    # a plain loop's run lives in a task of its own, outside the loop's cancel
    # scope: cancelling that scope stops the run when the cancellation
    # reaches the loop (api.md §6: the consumer leaves), not before.
    exempt = case["how"] == "cancel" and case["style"] == "plain"
    if not exempt and not any(plan.kind == "thread" for plan in case["stages"]):
        assert log.started_after_stop == []
    assert log.entered == log.left  # every finally ran
    assert log.leaks == []

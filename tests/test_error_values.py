"""Every error arrives once and as itself (issue 10, sections 3 and 4).

An exception group that user code raises is a value like any other exception:
it arrives whole, the same object, with conveyor's note once. Only failures
that happen together independently are gathered in a group of conveyor's.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from conveyor import batch_task, single_task
from conveyor.tasks import BaseTask

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup

pytestmark = pytest.mark.anyio

MODES = ["ordered", "as_completed"]


def conveyor_notes(error: BaseException) -> list[str]:
    return [note for note in getattr(error, "__notes__", []) if note.startswith("conveyor: ")]


def failing_task(kind: str, error: BaseException) -> BaseTask[Any, Any]:
    """A task of ``kind`` that raises ``error`` on item 1 and passes other items on."""
    if kind == "sync":

        def sync(x: int) -> int:
            if x == 1:
                raise error
            return x

        return single_task(sync)
    if kind == "async":

        async def suspending(x: int) -> int:
            await anyio.lowlevel.checkpoint()
            if x == 1:
                raise error
            return x

        return single_task(suspending)
    if kind == "thread":

        def blocking(x: int) -> int:
            if x == 1:
                raise error
            return x

        return single_task(run_in_thread=True)(blocking)
    if kind == "retried":

        async def flaky(x: int) -> int:
            if x == 1:
                raise error  # the same object on every attempt
            return x

        return single_task(retry_attempts=3, retry_delay=0)(flaky)
    if kind == "batch":

        def batch(xs: list[int]) -> list[int]:
            if 1 in xs:
                raise error
            return xs

        return batch_task(max_size=2)(batch)
    if kind == "generator":

        def generator(x: int) -> Iterator[int]:
            yield x
            if x == 1:
                raise error

        return single_task(generator)
    if kind == "async generator":

        async def agenerator(x: int) -> AsyncIterator[int]:
            yield x
            await anyio.lowlevel.checkpoint()
            if x == 1:
                raise error

        return single_task(agenerator)
    raise AssertionError(kind)


KINDS = ["sync", "async", "thread", "retried", "batch", "generator", "async generator"]


async def consume_by(how: str, task: BaseTask[Any, Any], data: list[int]) -> None:
    if how == "collect":
        await task(data).collect()
    elif how == "async for":
        async for _ in task(data):
            pass
    else:
        async with task.open(data) as results:
            async for _ in results:
                pass


WAYS = ["collect", "async for", "open"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", WAYS)
async def test_a_task_s_exception_group_arrives_as_that_group(kind: str, how: str) -> None:
    for inner in ([ValueError("bad date")], [ValueError("a"), TypeError("b")]):
        raised = ExceptionGroup("record 1 is invalid", inner)
        with pytest.raises(ExceptionGroup) as caught:
            await consume_by(how, failing_task(kind, raised), [0, 1, 2, 3])
        assert caught.value is raised
        assert caught.value.exceptions == tuple(inner)
        assert len(conveyor_notes(raised)) == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", MODES)
async def test_a_task_s_exception_arrives_with_one_note(kind: str, mode: str) -> None:
    raised = LookupError("no such record")
    task = failing_task(kind, raised).with_execution_mode(mode)  # type: ignore[arg-type]
    with pytest.raises(LookupError) as caught:
        await task([0, 1, 2, 3]).collect()
    assert caught.value is raised
    [note] = conveyor_notes(raised)
    assert "failed" in note


async def test_a_group_from_a_task_s_own_task_group_arrives_whole() -> None:
    @single_task
    async def fan_out(x: int) -> int:
        async def part(n: int) -> None:
            raise ValueError(f"part {n} of {x}")  # both fail at their first step

        async with anyio.create_task_group() as tg:  # the task's own concurrency
            tg.start_soon(part, 1)
            tg.start_soon(part, 2)
        return x  # pragma: no cover

    with pytest.raises(ExceptionGroup) as caught:
        await fan_out([7]).collect()
    assert sorted(str(e) for e in caught.value.exceptions) == ["part 1 of 7", "part 2 of 7"]
    assert conveyor_notes(caught.value) == ["conveyor: task 'fan_out' failed on item 7"]


@pytest.mark.parametrize("how", ["open", "async for"])
async def test_the_consumer_s_own_exception_group_comes_back_unchanged(how: str) -> None:
    @single_task
    def ident(x: int) -> int:
        return x

    mine = ExceptionGroup("my checks failed", [ValueError("a"), TypeError("b")])
    with pytest.raises(ExceptionGroup) as caught:
        if how == "open":
            async with ident.open([1, 2]) as results:
                async for _ in results:
                    raise mine
        else:
            async for _ in ident([1, 2]):
                raise mine
    assert caught.value is mine
    assert not hasattr(mine, "__notes__")
    assert mine.__context__ is None


async def test_independent_failures_are_gathered_around_the_users_groups() -> None:
    gate = anyio.Event()
    raised: dict[str, BaseException] = {}

    @single_task
    async def check(name: str) -> str:
        if name == "open":
            gate.set()  # wakes "a" and "b" together
            return name
        await gate.wait()
        raised[name] = ExceptionGroup(f"checks of {name}", [ValueError(name)])
        raise raised[name]

    with pytest.raises(ExceptionGroup) as caught:
        await check(["a", "b", "open"]).collect()
    assert caught.value.message == "several failures in a conveyor run"
    assert sorted(caught.value.exceptions, key=str) == [raised["a"], raised["b"]]


async def test_a_task_s_exception_keeps_its_own_context_and_cause() -> None:
    cause = OSError("disk")

    @single_task
    async def store(x: int) -> int:
        await anyio.lowlevel.checkpoint()
        try:
            raise cause
        except OSError as error:
            raise RuntimeError("cannot store") from error

    with pytest.raises(RuntimeError) as caught:
        async for _ in store([1]):
            pass
    assert caught.value.__cause__ is cause
    assert caught.value.__context__ is cause


async def test_an_error_handler_s_exception_group_arrives_whole() -> None:
    from conveyor import ErrorHandler

    handler_error = ExceptionGroup("handler gave up", [KeyError("x")])

    class GiveUp(ErrorHandler):
        async def handle_error(
            self, error: Exception, item: Any, task_name: str, attempt: int
        ) -> tuple[bool, Any]:
            raise handler_error

    @single_task(error_handler=GiveUp())
    def parse(text: str) -> int:
        return int(text)

    with pytest.raises(ExceptionGroup) as caught:
        await parse(["x"]).collect()
    assert caught.value is handler_error
    assert len(conveyor_notes(handler_error)) == 1

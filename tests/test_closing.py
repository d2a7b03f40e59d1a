"""An error raised while a generator is closed arrives once (issue 10, section 4).

When a run ends early (a ``break``, ``first()``, a failure elsewhere, a
cancellation), conveyor closes every generator that is still going, so that
its ``finally`` blocks run: the generators of generator tasks, and the input.
An exception raised there reaches the program exactly once, with one note of
conveyor's: raised by the iterator, ``collect()`` or the ``open()`` block
when it can be (gathered with the failure that stopped the run, when there
was one: the two are separate errors of the user's), else, once the
iterator was dropped, handed to the event loop (asyncio's exception
handler; on trio an ERROR record on the ``conveyor`` logger).

Errors of the input closed by a ``break``, ``first()`` or ``aclose()`` are
tested in ``test_input.py``; here are the other ways to stop, and generator
tasks of every kind under every ``on_error`` policy.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from conveyor import batch_task, single_task
from conveyor.tasks import BaseTask

from .helpers import closing_source, current_backend

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup

pytestmark = pytest.mark.anyio

GENERATORS = [
    "generator",
    "async generator",
    "async generator with a timeout",  # each wait for a value has its own deadline
    "thread generator",
    "thread executor generator",
]
POLICIES = ["fail", "skip_item", "retries"]
CLOSE_NOTE = "conveyor: task 'endless' failed on item 0 while it was being closed"


def policy_options(policy: str) -> dict[str, Any]:
    if policy == "retries":
        return {"retry_attempts": 3, "retry_delay": 0}
    return {"on_error": policy}


def closing_task(
    kind: str, error: Exception, policy: str = "fail", failure: Exception | None = None
) -> BaseTask[Any, Any]:
    """A generator task, endless on every item; item 0's ``finally`` raises ``error``.

    With ``failure``, item 1's generator raises it once item 0's has started
    (a generator that never started has no ``finally`` to run).
    """
    options = policy_options(policy)
    started = threading.Event()
    if kind.startswith("async generator"):
        if kind.endswith("timeout"):
            options["timeout"] = 60.0

        async def endless(x: int) -> AsyncIterator[int]:
            if x == 1 and failure is not None:
                while not started.is_set():
                    yield x
                    await anyio.lowlevel.checkpoint()
                raise failure
            try:
                started.set()
                while True:
                    yield x
                    await anyio.lowlevel.checkpoint()
            finally:
                if x == 0:
                    raise error

        return single_task(**options)(endless)

    def endless(x: int) -> Iterator[int]:  # type: ignore[misc]
        if x == 1 and failure is not None:
            while not started.is_set():
                yield x
            raise failure
        try:
            started.set()
            while True:
                yield x
        finally:
            if x == 0:
                raise error

    if kind == "thread generator":
        return single_task(run_in_thread=True, **options)(endless)
    if kind == "thread executor generator":
        return single_task(executor="thread", **options)(endless)
    assert kind == "generator"
    return single_task(**options)(endless)


def notes(error: BaseException) -> list[str]:
    return [n for n in getattr(error, "__notes__", []) if n.startswith("conveyor: ")]


class Reported:
    """What reaches the event loop: asyncio's exception handler, or trio's log."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        self.errors: list[BaseException] = []

    def __enter__(self) -> Reported:
        if current_backend() == "asyncio":
            self.loop = asyncio.get_running_loop()
            self.previous = self.loop.get_exception_handler()
            self.loop.set_exception_handler(
                lambda _, context: self.errors.append(context["exception"])
            )
        return self

    def __exit__(self, *_: object) -> None:
        if current_backend() == "asyncio":
            self.loop.set_exception_handler(self.previous)

    async def wait(self) -> list[BaseException]:
        with anyio.fail_after(5):
            while not self.logged() and not self.errors:
                await anyio.sleep(0.001)
        await anyio.sleep(0.01)  # anything reported twice would be there by now
        return [*self.errors, *self.logged()]

    def logged(self) -> list[BaseException]:
        """ERROR records of the ``conveyor`` logger, with the error (trio)."""
        return [
            record.exc_info[1]
            for record in self.caplog.records
            if record.name == "conveyor" and record.levelno == logging.ERROR and record.exc_info
        ]


# -- generator tasks -------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("kind", GENERATORS)
@pytest.mark.parametrize("how", ["open", "first", "aclose"])
async def test_a_generator_task_s_error_while_closed_after_an_early_exit_is_raised_once(
    kind: str, policy: str, how: str
) -> None:
    error = RuntimeError("cleanup failed")
    task = closing_task(kind, error, policy)
    with pytest.raises(RuntimeError) as caught:
        if how == "open":
            async with task.open(range(3)) as results:
                async for _ in results:
                    break
        elif how == "first":
            await task(range(3)).first()
        else:
            iterator = aiter(task(range(3)))
            await anext(iterator)
            await iterator.aclose()  # type: ignore[attr-defined]
    assert caught.value is error
    assert notes(error) == [CLOSE_NOTE]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("kind", GENERATORS)
@pytest.mark.parametrize("how", ["open", "plain"])
async def test_a_generator_task_s_error_while_closed_by_a_cancellation_is_raised_once(
    kind: str, policy: str, how: str
) -> None:
    # Also from a plain ``async for``, whose run lives in a task of its own:
    # the cancellation reaches the run inside the iterator, and the close
    # error comes out of the cancelled scope in its place, as from open().
    error = RuntimeError("cleanup failed")
    task = closing_task(kind, error, policy)
    with pytest.raises(RuntimeError) as caught:
        with anyio.CancelScope() as scope:
            if how == "open":
                async with task.open(range(3)) as results:
                    async for _ in results:
                        scope.cancel()  # the run's enclosing scope is cancelled
            else:
                async for _ in task(range(3)):
                    scope.cancel()
    assert caught.value is error
    assert notes(error) == [CLOSE_NOTE]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("kind", GENERATORS)
async def test_a_generator_task_s_error_while_closed_after_a_later_failure_comes_with_it(
    kind: str, policy: str
) -> None:
    error = RuntimeError("cleanup failed")
    failure = ValueError("no")

    @single_task
    def check(x: int) -> int:
        if x == 0:  # item 0's generator has started
            raise failure
        return x

    with pytest.raises(ExceptionGroup) as caught:
        await (closing_task(kind, error, policy) | check)(range(3)).collect()
    assert sorted(map(id, caught.value.exceptions)) == sorted([id(error), id(failure)])
    assert notes(error) == [CLOSE_NOTE]
    assert len(notes(failure)) == 1


@pytest.mark.parametrize("policy", ["fail", "retries"])
@pytest.mark.parametrize("kind", GENERATORS)
async def test_a_generator_task_s_error_while_closed_after_another_item_failed_comes_with_it(
    kind: str, policy: str
) -> None:
    error = RuntimeError("cleanup failed")
    failure = ValueError("no")
    with pytest.raises(ExceptionGroup) as caught:
        await closing_task(kind, error, policy, failure)(range(3)).collect()
    assert sorted(map(id, caught.value.exceptions)) == sorted([id(error), id(failure)])
    assert notes(error) == [CLOSE_NOTE]
    assert len(notes(failure)) == 1


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("kind", GENERATORS)
async def test_a_generator_task_s_error_while_closed_after_a_break_goes_to_the_event_loop(
    kind: str, policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    error = RuntimeError("cleanup failed")
    with Reported(caplog) as reported:
        async for _ in closing_task(kind, error, policy)(range(3)):
            break  # the iterator is dropped: nobody is left to raise the error to
        assert await reported.wait() == [error]
    assert notes(error) == [CLOSE_NOTE]


# -- the input ---------------------------------------------------------------------

INPUT_NOTE = "conveyor: raised by the input while it was being closed"


SOURCES = ["sync", "async", "read_in_thread"]


@single_task
async def handle(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return x


@pytest.mark.parametrize("source", SOURCES)
async def test_an_input_s_error_while_closed_by_a_cancellation_is_raised_once(
    source: str,
) -> None:
    error = RuntimeError("cleanup failed")
    with pytest.raises(RuntimeError) as caught:
        with anyio.CancelScope() as scope:
            async with handle.open(closing_source(source, error)) as results:
                async for _ in results:
                    scope.cancel()
    assert caught.value is error
    assert notes(error) == [INPUT_NOTE]


@pytest.mark.parametrize("source", SOURCES)
async def test_an_input_s_error_while_closed_after_a_failure_comes_with_it(source: str) -> None:
    error = RuntimeError("cleanup failed")
    failure = ValueError("no")

    @single_task
    def check(x: int) -> int:
        if x == 5:
            raise failure
        return x

    with pytest.raises(ExceptionGroup) as caught:
        await check(closing_source(source, error)).collect()
    assert sorted(map(id, caught.value.exceptions)) == sorted([id(error), id(failure)])
    assert notes(error) == [INPUT_NOTE]


@pytest.mark.parametrize("source", SOURCES)
async def test_an_input_s_error_while_closed_by_stop_reading_is_raised_once(source: str) -> None:
    error = RuntimeError("cleanup failed")
    with pytest.raises(RuntimeError) as caught:
        async with handle.open(closing_source(source, error)) as results:
            async for _ in results:
                results.stop_reading()
    assert caught.value is error
    assert notes(error) == [INPUT_NOTE]


@pytest.mark.parametrize("kind", ["generator", "async generator"])
@pytest.mark.parametrize("how", ["first", "stop_reading", "break"])
async def test_a_source_task_s_error_while_closed_arrives_once(
    kind: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    error = RuntimeError("cleanup failed")
    if kind == "generator":

        def readings() -> Iterator[int]:
            try:
                yield from range(10**9)
            finally:
                raise error

        source = single_task(readings)
    else:

        async def areadings() -> AsyncIterator[int]:
            try:
                for number in range(10**9):
                    yield number
                    await anyio.lowlevel.checkpoint()
            finally:
                raise error

        source = single_task(areadings)
    pipeline = source | handle
    if how == "break":
        with Reported(caplog) as reported:
            async for _ in pipeline():
                break
            assert await reported.wait() == [error]
    else:
        with pytest.raises(RuntimeError) as caught:
            if how == "first":
                await pipeline().first()
            else:
                async with pipeline.open() as results:
                    async for _ in results:
                        results.stop_reading()
        assert caught.value is error
    name = "readings" if kind == "generator" else "areadings"
    assert notes(error) == [f"conveyor: raised by source task {name!r} while it was being closed"]


# -- the consumer's own exception wins; a close's error goes to the event loop ----


@pytest.mark.parametrize("kind", GENERATORS)
@pytest.mark.parametrize("how", ["open", "async for"])
async def test_a_close_s_error_after_the_consumer_s_own_exception_goes_to_the_event_loop(
    kind: str, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    error = RuntimeError("cleanup failed")
    mine = KeyError("mine")
    task = closing_task(kind, error)
    with Reported(caplog) as reported:
        with pytest.raises(KeyError) as caught:
            if how == "open":
                async with task.open(range(3)) as results:
                    async for _ in results:
                        raise mine
            else:
                async for _ in task(range(3)):
                    raise mine
        assert await reported.wait() == [error]
    assert caught.value is mine  # unchanged, and alone
    assert notes(error) == [CLOSE_NOTE]


@pytest.mark.parametrize("kind", ["generator", "async generator"])
@pytest.mark.parametrize("how", ["open", "first"])
async def test_a_batch_task_s_generator_error_while_closed_is_raised_once(
    kind: str, how: str
) -> None:
    error = RuntimeError("cleanup failed")
    if kind == "generator":

        def endless(batch: list[int]) -> Iterator[int]:
            try:
                while True:
                    yield from batch
            finally:
                if 0 in batch:
                    raise error

        task = batch_task(max_size=2)(endless)
    else:

        async def aendless(batch: list[int]) -> AsyncIterator[int]:
            try:
                while True:
                    for x in batch:
                        yield x
                    await anyio.lowlevel.checkpoint()
            finally:
                if 0 in batch:
                    raise error

        task = batch_task(max_size=2, task_name="endless")(aendless)
    with pytest.raises(RuntimeError) as caught:
        if how == "open":
            async with task.open(range(4)) as results:
                async for _ in results:
                    break
        else:
            await task(range(4)).first()
    assert caught.value is error
    assert notes(error) == [
        "conveyor: task 'endless' failed on item [0, 1] while it was being closed"
    ]

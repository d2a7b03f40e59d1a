"""How a run ended, as instruments, the progress display and OpenTelemetry say it.

A consumer that stops early (``break``, ``first()``, ``stop_reading()``) ends
the run normally: ``"stopped"``, not an error. Only a failure is an error; a
cancellation from outside is ``"cancelled"``.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from opentelemetry.trace import StatusCode

from conveyor import Instrument, Pipeline, RunInfo, single_task
from conveyor.integrations.progress import Progress

from .test_otel import Telemetry

pytestmark = pytest.mark.anyio


@single_task
async def fetch(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    if x < 0:
        raise ValueError(f"bad item {x}")
    if x >= 1000:
        await anyio.sleep_forever()  # a call that never ends on its own
    return x


async def numbers(stop: int = 10**9) -> AsyncIterator[int]:
    """An input that would go on for a long time."""
    for i in range(stop):
        yield i


# -- the ways a run ends: each runs ``pipeline`` once and lets the test go on ---------


async def read_to_the_end(pipeline: Pipeline[int, int]) -> None:
    assert await pipeline(range(10)).collect() == list(range(10))


async def loop_to_the_end(pipeline: Pipeline[int, int]) -> None:
    assert [x async for x in pipeline(range(10))] == list(range(10))


async def break_out_of_the_loop(pipeline: Pipeline[int, int]) -> None:
    async for x in pipeline(numbers()):
        if x == 3:
            break


async def break_out_of_the_block(pipeline: Pipeline[int, int]) -> None:
    async with pipeline(numbers()).open() as results:
        async for x in results:
            if x == 3:
                break


async def take_the_first(pipeline: Pipeline[int, int]) -> None:
    assert await pipeline(numbers()).first() == 0


async def stop_reading(pipeline: Pipeline[int, int]) -> None:
    stream = pipeline(numbers())
    async for x in stream:
        if x == 3:
            stream.stop_reading()  # the items read so far still come out


async def stop_reading_after_the_input_ended(pipeline: Pipeline[int, int]) -> None:
    stream = pipeline(range(10))
    seen = []
    async for x in stream:
        seen.append(x)
        stream.stop_reading()  # the whole list was read at once: nothing is cut short
    assert seen == list(range(10))


async def fail_a_call(pipeline: Pipeline[int, int]) -> None:
    with pytest.raises(ValueError, match="bad item -1"):
        await pipeline([1, 2, -1, 3]).collect()


async def fail_the_input(pipeline: Pipeline[int, int]) -> None:
    async def broken() -> AsyncIterator[int]:
        yield 1
        raise OSError("the source went away")

    with pytest.raises(OSError, match="went away"):
        async for _ in pipeline(broken()):
            pass


async def cancel_the_loop_from_outside(pipeline: Pipeline[int, int]) -> None:
    with anyio.CancelScope() as scope:
        async for x in pipeline([0, 1, 1000]):  # 1000 never comes out
            if x == 1:
                scope.cancel()  # (from the loop, for a test: a timeout would do the same)
    assert scope.cancelled_caught


async def cancel_the_block_from_outside(pipeline: Pipeline[int, int]) -> None:
    with anyio.CancelScope() as scope:
        async with pipeline([0, 1, 1000]).open() as results:
            async for x in results:
                if x == 1:
                    scope.cancel()
    assert scope.cancelled_caught


Ending = Callable[[Pipeline[int, int]], Awaitable[None]]

#: (way of ending, outcome, the error's type or None)
ENDINGS: list[Any] = [
    pytest.param(read_to_the_end, "done", None, id="collect"),
    pytest.param(loop_to_the_end, "done", None, id="loop-to-the-end"),
    pytest.param(break_out_of_the_loop, "stopped", None, id="break"),
    pytest.param(break_out_of_the_block, "stopped", None, id="break-in-open"),
    pytest.param(take_the_first, "stopped", None, id="first"),
    pytest.param(stop_reading, "stopped", None, id="stop_reading"),
    pytest.param(stop_reading_after_the_input_ended, "done", None, id="late-stop_reading"),
    pytest.param(fail_a_call, "failed", ValueError, id="failed-call"),
    pytest.param(fail_the_input, "failed", OSError, id="failed-input"),
    pytest.param(cancel_the_loop_from_outside, "cancelled", BaseException, id="cancelled"),
    pytest.param(cancel_the_block_from_outside, "cancelled", BaseException, id="cancelled-in-open"),
]


class Ended(Instrument):
    """Keeps the finished run; the test waits for it (after a plain ``break`` the
    run is stopped right after the loop, by the loop's event loop)."""

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.run: RunInfo | None = None

    def run_finished(self, run: RunInfo) -> None:
        self.run = run
        self.event.set()


async def end_a_run(ending: Ending, *instruments: object) -> RunInfo:
    """Run ``fetch`` with ``instruments``, end it by ``ending``, and return the run."""
    ended = Ended()
    await ending(fetch.with_instruments(*instruments, ended))
    with anyio.fail_after(10):  # generous: it is due within a few scheduling rounds
        await ended.event.wait()
    assert ended.run is not None
    return ended.run


@pytest.mark.parametrize(("ending", "outcome", "error"), ENDINGS)
async def test_run_finished_says_how_the_run_ended(
    ending: Ending, outcome: str, error: type[BaseException] | None
) -> None:
    run = await end_a_run(ending)

    assert run.outcome == outcome
    if error is None:
        assert run.error is None
    elif error is BaseException:  # a cancellation: the backend's own class
        assert isinstance(run.error, anyio.get_cancelled_exc_class())
    else:
        assert isinstance(run.error, error)


@pytest.mark.parametrize(("ending", "outcome", "error"), ENDINGS)
async def test_the_progress_display_says_how_the_run_ended(
    ending: Ending, outcome: str, error: type[BaseException] | None
) -> None:
    log = io.StringIO()
    await end_a_run(ending, Progress(file=log))

    titles = re.findall(r"conveyor run \w{8}: (\w+), elapsed", log.getvalue())
    assert titles == [outcome]


@pytest.mark.parametrize(("ending", "outcome", "error"), ENDINGS)
async def test_the_run_span_is_an_error_only_when_the_run_failed(
    ending: Ending, outcome: str, error: type[BaseException] | None
) -> None:
    telemetry = Telemetry()
    try:
        await end_a_run(ending, telemetry.instrument())
        [span] = telemetry.spans("conveyor.run")
    finally:
        telemetry.tracer_provider.shutdown()
        telemetry.meter_provider.shutdown()

    assert span.attributes is not None
    assert span.attributes["conveyor.run.outcome"] == outcome
    if outcome == "failed":
        assert error is not None
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes["error.type"] == error.__name__
        assert [event.name for event in span.events] == ["exception"]
    else:
        assert span.status.status_code is StatusCode.UNSET
        assert "error.type" not in span.attributes
        assert span.events == ()

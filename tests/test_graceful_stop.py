"""A graceful stop: stop reading, finish what was read, end normally (issue 10, section 10)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from conveyor import batch_task, read_in_thread, single_task

pytestmark = pytest.mark.anyio


class Source:
    """An endless input that counts what was read and whether it was closed."""

    def __init__(self) -> None:
        self.read = 0
        self.closed = False

    def sync(self) -> Iterator[int]:
        try:
            while True:
                self.read += 1
                yield self.read - 1
        finally:
            self.closed = True

    async def asynchronous(self) -> AsyncIterator[int]:
        try:
            while True:
                await anyio.sleep(0.0001 if self.read % 5 == 0 else 0)
                self.read += 1
                yield self.read - 1
        finally:
            self.closed = True

    def of_kind(self, kind: str) -> Any:
        if kind == "sync":
            return self.sync()
        if kind == "async":
            return self.asynchronous()
        return read_in_thread(self.sync(), batch_size=8)


KINDS = ["sync", "async", "thread"]

calls_finished: list[int] = []


@single_task(concurrency_limit=8)
async def slow(n: int) -> int:
    await anyio.sleep(0.002 if n % 3 else 0.0)
    calls_finished.append(n)
    return n


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["ordered", "as_completed"])
async def test_stop_reading_finishes_every_item_read_then_ends_normally(
    kind: str, mode: str
) -> None:
    source = Source()
    calls_finished.clear()
    stream = slow.with_execution_mode(mode)(source.of_kind(kind))  # type: ignore[arg-type]
    got = []
    async for n in stream:
        got.append(n)
        if len(got) == 30:
            stream.stop_reading()
    assert sorted(got) == list(range(source.read))  # every item read was released
    assert len(got) >= 30
    assert sorted(calls_finished) == sorted(got)  # no call was cancelled
    assert source.closed


@pytest.mark.parametrize("kind", KINDS)
async def test_stop_reading_inside_open_through_a_batch_stage(kind: str) -> None:
    source = Source()

    @batch_task(max_size=4)
    def total(batch: list[int]) -> int:
        return sum(batch)

    async with (slow | total).open(source.of_kind(kind)) as results:
        sums = []
        async for value in results:
            sums.append(value)
            if len(sums) == 5:
                results.stop_reading()
    # The last, smaller batch of the items read is processed too (min_size is 1).
    assert sum(sums) == sum(range(source.read))
    assert source.closed


async def test_stop_reading_before_the_run_starts_reads_nothing() -> None:
    source = Source()
    stream = slow(source.sync())
    stream.stop_reading()
    assert await stream.collect() == []
    assert source.read == 0
    assert source.closed is False  # never started, so there was nothing to close


async def test_stop_reading_twice_or_after_the_end_is_harmless() -> None:
    stream = slow(range(5))
    assert await stream.collect() == [0, 1, 2, 3, 4]
    stream.stop_reading()
    stream.stop_reading()


async def test_stop_reading_leaves_a_slow_input_s_wait_at_once() -> None:
    never = anyio.Event()

    async def waits_for_ever() -> AsyncIterator[int]:
        yield 1
        await never.wait()  # no second reading comes
        yield 2  # pragma: no cover

    stream = slow(waits_for_ever())
    got = []
    with anyio.fail_after(5):
        async for n in stream:
            got.append(n)
            stream.stop_reading()
    assert got == [1]


PROGRAM = textwrap.dedent(
    """
    import signal
    import sys

    import anyio

    from conveyor import single_task

    read = 0


    def readings():
        global read
        while True:
            read += 1
            yield read - 1


    @single_task(concurrency_limit=4)
    async def store(n):
        await anyio.sleep(0.001)
        return n


    async def main():
        stream = store(readings())
        got = []
        async with anyio.create_task_group() as tg:

            async def stop_on_sigterm():
                with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                    async for _ in signals:
                        stream.stop_reading()
                        return

            tg.start_soon(stop_on_sigterm)
            async for n in stream:
                got.append(n)
                if n == 10:
                    print("ready", flush=True)  # the parent sends SIGTERM now
            tg.cancel_scope.cancel()
        assert got == list(range(read)), (len(got), read)
        print("stopped after", len(got), flush=True)


    anyio.run(main, backend=sys.argv[1])
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is a POSIX signal")
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sigterm_stops_a_service_gracefully(backend: str) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", PROGRAM, backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert (process.returncode, err) == (0, "")
    assert out.startswith("stopped after ")

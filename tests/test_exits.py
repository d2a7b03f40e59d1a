"""SystemExit and KeyboardInterrupt from a task end the program cleanly (issue 10, section 5).

Each case runs a small program in a fresh interpreter, as a user would: the
exception must reach ``anyio.run``'s caller once and bare, the process must
exit (no worker thread left waiting), and nothing else may be printed: no
second traceback, no "unhandled exception during asyncio.run() shutdown", no
"coroutine ... was never awaited".
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

PROGRAM = textwrap.dedent(
    """
    import sys

    import anyio
    import anyio.lowlevel

    from conveyor import batch_task, single_task

    backend, where, fault, how = sys.argv[1:]


    def fail() -> None:
        if fault == "SystemExit":
            sys.exit(3)
        raise KeyboardInterrupt


    if where == "thread":

        @single_task(run_in_thread=True)
        def task(x: int) -> int:
            if x == 5:
                fail()
            return x

    elif where == "async":

        @single_task(retry_attempts=3, retry_delay=0, on_error="skip_item")
        async def task(x: int) -> int:
            await anyio.sleep(0.001 * x)
            if x == 5:
                fail()
            return x

    elif where == "batch":

        @batch_task(max_size=2, concurrency_limit=4)
        async def task(xs: list[int]) -> list[int]:
            await anyio.sleep(0.001)
            if 5 in xs:
                fail()
            return xs

    elif where == "monitor":  # an instrument's monitor task

        class Watch:
            async def monitor(self, run: object) -> None:
                await anyio.lowlevel.checkpoint()
                fail()

        @single_task
        async def forever(x: int) -> int:
            await anyio.sleep_forever()
            return x

        task = forever.with_instruments(Watch())

    else:

        @single_task
        def task(x: int) -> int:
            if x == 5:
                fail()
            return x


    async def main() -> None:
        if how == "collect":
            await task(range(50)).collect()
        else:
            async for _ in task(range(50)):
                pass


    anyio.run(main, backend=backend)
    """
)


def run_program(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROGRAM, *args],
        capture_output=True,
        text=True,
        timeout=120,  # a worker thread left waiting would hang the process
        check=False,
    )


@pytest.mark.parametrize("how", ["collect", "async for"])
@pytest.mark.parametrize("where", ["thread", "async", "sync", "batch", "monitor"])
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sys_exit_in_a_task_exits_the_program_with_its_status(
    backend: str, where: str, how: str
) -> None:
    result = run_program(backend, where, "SystemExit", how)
    assert (result.returncode, result.stderr) == (3, "")


@pytest.mark.parametrize("how", ["collect", "async for"])
@pytest.mark.parametrize("where", ["thread", "async", "sync", "batch", "monitor"])
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_keyboard_interrupt_in_a_task_reaches_the_caller_and_nothing_else_is_printed(
    backend: str, where: str, how: str
) -> None:
    result = run_program(backend, where, "KeyboardInterrupt", how)
    # An uncaught KeyboardInterrupt ends Python as SIGINT would.
    assert result.returncode in (-signal.SIGINT, 128 + signal.SIGINT, 0xC000013A)
    lines = result.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-1] == "KeyboardInterrupt"
    assert result.stderr.count("Traceback") == 1  # one exception: no group, no context
    for noise in ("Warning", "shutdown", "never awaited", "Group", "During handling"):
        assert noise not in result.stderr

"""Issue 9's table, measured: every row run as a user writes it, in real time.

Issue 9 (stream what one item expands to) opens with a table of small
programs and what each one released, and when. This script runs every row of
that table through conveyor's public API, on asyncio and on trio, with the
wall clock (no virtual time: the point is what a user sees), and prints the
table in markdown with what happened on each backend next to what is right.

    python benchmarks/expansion_rows.py                       # this checkout
    python benchmarks/expansion_rows.py --backend trio --rows 1,5
    PYTHONPATH=/work/baseline /work/baseline/.venv/bin/python \\
        benchmarks/expansion_rows.py                           # the baseline

The rows (times in seconds from calling the pipeline to each release):

1. `@single_task async def gen(x)` yields 3 values, `sleep(0.3)` before each:
   ordered, as-completed, and inside `open()` in both modes.
2. `@single_task def listy(x): return [x, x + 100]`, then a stage sleeping
   1.0 s for values >= 100 and 0.05 s otherwise; ordered, input `[1]`.
3. `@batch_task(max_size=10)` returning its list, then a stage sleeping 1.0 s
   for `x % 10 == 9` and 0.05 s otherwise; ordered, `range(20)`.
4. `@single_task async def lines(path)` yields 2,000,000 strings of 45
   characters (`await sleep(0)` every 1,000): time to the first value, total
   time, and peak RSS growth (VmHWM over VmRSS before the run, as the
   `memory` workload measures it).
5. An endless async generator task; the consumer breaks after 10 values:
   the values it got, and whether (and when) the generator's `finally` ran.
   It runs in a child process with its address space capped (2 GB by
   default, `--memory-cap`) and a guard (`anyio.move_on_after(10)`), so a
   library that drains the generator whole reports what happened instead
   of hanging or eating the machine's memory.

Values released within 20 ms of each other are shown as one group
("0 to 8 at 0.05"). `--quick` (for the test suite) scales every sleep by 0.2
and makes row 4 20,000 lines: the table's shape, not the issue's figures.

Standard library, anyio and conveyor's public API only (trio for the trio
column, which shows `n/a` without it). Linux only: memory is read from
/proc/self/status.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio

import conveyor
from conveyor import batch_task, single_task

HERE = Path(__file__).resolve().parent
BACKENDS = ("asyncio", "trio")
ROWS = ("1", "2", "3", "4", "5")
GROUP_WINDOW = 0.02  # releases this close together are reported as one group
ROW_GUARD = 60.0  # seconds: a row of the table that runs longer reports a time-out
ENDLESS_GUARD = 10.0  # seconds: the endless row's wait for its 10 values
FINALLY_WAIT = 2.0  # seconds after the break to watch for the generator's finally


def _load_workload() -> ModuleType:
    """benchmarks/cases/workload.py, for its /proc memory helpers.

    Loaded by path: putting the repository root on sys.path would shadow the
    conveyor under test (the baseline's, from PYTHONPATH) with this tree's.
    """
    spec = importlib.util.spec_from_file_location(
        "_expansion_rows_workload", HERE / "cases" / "workload.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


workload = _load_workload()


@dataclass(frozen=True)
class Scale:
    """The sizes of one run: the issue's (1.0, 2,000,000) or --quick's."""

    time: float = 1.0
    lines: int = 2_000_000

    def s(self, seconds: float) -> float:
        return seconds * self.time


# --------------------------------------------------------------------------
# describing what was released, and when
# --------------------------------------------------------------------------


def _values(values: list[Any]) -> str:
    ints = all(isinstance(v, int) for v in values)
    if ints and len(values) > 2 and values == list(range(values[0], values[0] + len(values))):
        return f"{values[0]} to {values[-1]}"
    return ", ".join(str(v) for v in values)


def describe(released: list[tuple[Any, float]]) -> str:
    """ "10 at 0.30; 11 at 0.60" or "all 3 at 0.90": values grouped by release time."""
    if not released:
        return "nothing released"
    groups: list[tuple[list[Any], float, float]] = []
    for value, t in released:
        if groups and t - groups[-1][1] <= GROUP_WINDOW:
            values, first, _ = groups[-1]
            groups[-1] = ([*values, value], first, t)
        else:
            groups.append(([value], t, t))
    parts = []
    for values, first, last in groups:
        who = f"all {len(values)}" if len(groups) == 1 and len(values) > 2 else _values(values)
        when = f"{first:.2f}" if last - first < 0.005 else f"{first:.2f}-{last:.2f}"
        parts.append(f"{who} at {when}")
    return "; ".join(parts)


async def _released(
    start: float, results: AsyncIterable[Any], out: list[tuple[Any, float]]
) -> None:
    async for value in results:
        out.append((value, time.perf_counter() - start))


async def timed(
    make: Callable[[], AsyncIterable[Any]] | None = None,
    opened: Callable[[], Any] | None = None,
) -> str:
    """Each released value with its time since the pipeline was called.

    `make` gives a stream to iterate with plain `async for`; `opened` gives
    an `open()` context manager whose stream is iterated inside the block.
    """
    released: list[tuple[Any, float]] = []
    try:
        with anyio.move_on_after(ROW_GUARD) as guard:
            start = time.perf_counter()
            if opened is not None:
                async with opened() as results:
                    await _released(start, results, released)
            else:
                assert make is not None
                await _released(start, make(), released)
    except Exception as exc:  # the library failed the row: that is the row's result
        return f"raised {type(exc).__name__}: {exc}; before it: {describe(released)}"
    text = describe(released)
    if guard.cancelled_caught:
        return f"timed out after {ROW_GUARD:.0f} s; {text}"
    return text


# --------------------------------------------------------------------------
# rows 1 to 3: release times
# --------------------------------------------------------------------------


def make_gen(scale: Scale) -> Any:
    @single_task
    async def gen(x: int) -> AsyncIterator[int]:
        for k in range(3):
            await anyio.sleep(scale.s(0.3))
            yield 10 * x + k

    return gen


def make_listy_then_wait(scale: Scale) -> Any:
    @single_task
    def listy(x: int) -> list[int]:
        return [x, x + 100]

    @single_task
    async def wait(x: int) -> int:
        await anyio.sleep(scale.s(1.0) if x >= 100 else scale.s(0.05))
        return x

    return listy | wait


def make_batch_then_wait(scale: Scale) -> Any:
    @batch_task(max_size=10)
    async def batch(xs: list[int]) -> list[int]:
        return xs

    @single_task
    async def wait(x: int) -> int:
        await anyio.sleep(scale.s(1.0) if x % 10 == 9 else scale.s(0.05))
        return x

    return batch | wait


async def row_1(scale: Scale) -> dict[str, str]:
    gen = make_gen(scale)
    return {
        "1 ordered": await timed(lambda: gen([1])),
        "1 as_completed": await timed(lambda: gen.as_completed([1])),
        "1 open ordered": await timed(opened=lambda: gen.open([1])),
        "1 open as_completed": await timed(
            opened=lambda: gen.with_execution_mode("as_completed").open([1])
        ),
    }


async def row_2(scale: Scale) -> dict[str, str]:
    pipeline = make_listy_then_wait(scale)
    return {"2": await timed(lambda: pipeline([1]))}


async def row_3(scale: Scale) -> dict[str, str]:
    pipeline = make_batch_then_wait(scale)
    return {"3": await timed(lambda: pipeline(range(20)))}


# --------------------------------------------------------------------------
# row 4: one path in, its lines out
# --------------------------------------------------------------------------


def make_lines(n: int) -> Any:
    @single_task
    async def lines(path: str) -> AsyncIterator[str]:
        for i in range(n):
            if i % 1000 == 0:
                await anyio.sleep(0)  # noqa: ASYNC115 (the issue's program, as users write it)
            yield f"{path}:{i:09d}: the quick brown fox jumps over"  # 45 characters

    return lines


async def _read_lines(n: int) -> tuple[float | None, int, str]:
    """Read every line: (first value's time, lines read, the last line)."""
    first: float | None = None
    count = 0
    last = ""
    start = time.perf_counter()
    async for line in make_lines(n)(["a.txt"]):
        if first is None:
            first = time.perf_counter() - start
        count += 1
        last = line
    return first, count, last


async def row_4(scale: Scale) -> dict[str, str]:
    await _read_lines(1_000)  # warm-up: imports and first-use costs out of the figures
    gc.collect()
    reset = workload._reset_peak_rss()
    base_kb = workload._proc_status_kb("VmRSS") if reset else workload._peak_rss_kb()
    start = time.perf_counter()
    with anyio.move_on_after(ROW_GUARD) as guard:
        first, count, last = await _read_lines(scale.lines)
    total = time.perf_counter() - start
    growth_mb = max(0, workload._peak_rss_kb() - (base_kb or 0)) / 1024
    if guard.cancelled_caught:
        return {"4": f"timed out after {ROW_GUARD:.0f} s; +{growth_mb:.0f} MB RSS"}
    first_text = "no value" if first is None else f"first value at {first:.3f}"
    text = f"{first_text}, {count:,} in {total:.2f} total, +{growth_mb:.0f} MB RSS"
    expected_last = f"a.txt:{scale.lines - 1:09d}: the quick brown fox jumps over"
    if count != scale.lines or last != expected_last:
        text += f" (WRONG: expected {scale.lines:,} lines ending with line {scale.lines - 1})"
    return {"4": text}


# --------------------------------------------------------------------------
# row 5: an endless generator, in a child process with a memory cap
# --------------------------------------------------------------------------


async def endless_child(guard_s: float) -> dict[str, Any]:
    """The consumer breaks after 10 values; what it got and when the finally ran."""
    state: dict[str, Any] = {"yielded": 0, "finally_at": None}

    @single_task
    async def endless(x: int) -> AsyncIterator[int]:
        i = 0
        try:
            while True:
                yield i
                i += 1
                state["yielded"] = i
                if i % 1000 == 0:
                    await anyio.sleep(0)  # noqa: ASYNC115 (as in row 4)
        finally:
            state["finally_at"] = time.perf_counter()

    got: list[int] = []
    error = None
    start = time.perf_counter()
    stopped = start
    try:
        with anyio.move_on_after(guard_s) as guard:
            async for value in endless([1]):
                got.append(value)
                if len(got) == 10:
                    break
        stopped = time.perf_counter()
    except Exception as exc:  # a MemoryError at the cap, say: reported, not raised
        stopped = time.perf_counter()
        error = f"{type(exc).__name__}: {exc}"[:200] if str(exc) else type(exc).__name__
    with anyio.move_on_after(FINALLY_WAIT):
        while state["finally_at"] is None:
            await anyio.sleep(0.01)
    return {
        "got": got,
        "stopped_at": stopped - start,
        "timed_out": error is None and guard.cancelled_caught,
        "error": error,
        "yielded": state["yielded"],
        "finally_after": None
        if state["finally_at"] is None
        else max(0.0, state["finally_at"] - stopped),
        "state": state,
    }


def _run_endless_child(backend: str, guard_s: float, cap_mb: int) -> None:
    """The child process: cap the address space, run the row, print one JSON line."""
    import resource

    cap = cap_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    result = anyio.run(endless_child, guard_s, backend=backend)
    state = result.pop("state")
    # the finally may run only when the event loop shuts down (its async
    # generator hooks close what was left): state shows it after anyio.run
    result["finally_at_shutdown"] = result["finally_after"] is None and (
        state["finally_at"] is not None
    )
    result["yielded"] = state["yielded"]
    result["peak_rss_mb"] = round((workload._peak_rss_kb() or 0) / 1024)
    print(json.dumps(result), flush=True)


def describe_endless(result: dict[str, Any], guard_s: float, cap_mb: int) -> str:
    got = result["got"]
    if result["error"]:
        head = f"{result['error']} after {result['stopped_at']:.2f} s, {len(got)} values got"
    elif result["timed_out"]:
        head = (
            f"no value within {guard_s:.0f} s"
            if not got
            else f"{len(got)} values in {guard_s:.0f} s"
        )
    else:
        head = (
            f"{len(got)} values ({', '.join(map(str, got[:3]))}, ...) by {result['stopped_at']:.2f}"
        )
    if result["finally_after"] is not None:
        fin = f"its finally ran {result['finally_after']:.3f} s after the loop ended"
    elif result["finally_at_shutdown"]:
        fin = (
            f"its finally ran only when the event loop shut down (not within {FINALLY_WAIT:.0f} s)"
        )
    else:
        fin = "its finally never ran"
    return (
        f"{head}; {fin}; the generator made {result['yielded']:,} values; "
        f"peak RSS {result['peak_rss_mb']:,} MB (cap {cap_mb:,} MB)"
    )


def row_5(backend: str, guard_s: float, cap_mb: int) -> dict[str, str]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--endless-child",
        "--backend",
        backend,
        "--endless-guard",
        str(guard_s),
        "--memory-cap",
        str(cap_mb),
    ]
    # the child's own guard is guard_s plus FINALLY_WAIT; generous slack over that
    limit = guard_s + FINALLY_WAIT + 60
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return {"5": f"hung: the child process was killed after {limit:.0f} s"}
    lines = done.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return {"5": f"the child process died (exit status {done.returncode}): {tail}"}
    text = describe_endless(result, guard_s, cap_mb)
    warnings = [line for line in done.stderr.splitlines() if line.strip()]
    if warnings:
        text += f"; stderr: {warnings[0][:160]}"
    return {"5": text}


# --------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------

# (key, row of the issue, program, right), in the order
TABLE = [
    (
        "1 ordered",
        "1",
        "`@single_task async def gen(x)` yields 3 values, `sleep({t03})` before each; "
        "`async for r in gen([1])`",
        "{t03}, {t06}, {t09}",
    ),
    ("1 as_completed", "1", "the same with `.as_completed([1])`", "{t03}, {t06}, {t09}"),
    ("1 open ordered", "1", "the same inside `async with gen.open([1])`", "{t03}, {t06}, {t09}"),
    (
        "1 open as_completed",
        "1",
        'the same inside `async with gen.with_execution_mode("as_completed").open([1])`',
        "{t03}, {t06}, {t09}",
    ),
    (
        "2",
        "2",
        "`@single_task def listy(x): return [x, x + 100]` then a stage that sleeps {t10} s "
        "for values ≥ 100 and {t005} s otherwise; ordered, input `[1]`",
        "1 at {t005}, 101 at {t10}",
    ),
    (
        "3",
        "3",
        "`@batch_task(max_size=10)` returning its list, then a stage sleeping {t10} s for "
        "x % 10 == 9 and {t005} s otherwise; ordered, `range(20)`",
        "0 to 8 at {t005}; 9 to 19 at {t10}",
    ),
    (
        "4",
        "4",
        "`@single_task async def lines(path)` yields {lines} strings of 45 characters "
        '(`await sleep(0)` every 1,000); `async for` over `lines(["a.txt"])`',
        "first value within milliseconds, flat memory, faster than conveyor-streaming "
        "(2.15 s for 2,000,000)",
    ),
    (
        "5",
        "5",
        "a generator task that yields forever, consumer breaks after 10 values",
        "10 values, then the generator is closed (its `finally` runs)",
    ),
]


def render(results: dict[str, dict[str, str]], rows: list[str], scale: Scale) -> str:
    numbers = {
        "t03": f"{scale.s(0.3):.2f}",
        "t06": f"{scale.s(0.6):.2f}",
        "t09": f"{scale.s(0.9):.2f}",
        "t10": f"{scale.s(1.0):.2f}",
        "t005": f"{scale.s(0.05):.2f}",
        "lines": f"{scale.lines:,}",
    }
    backends = list(results)
    out = [
        "| program | " + " | ".join(backends) + " | right |",
        "|---|" + "---|" * len(backends) + "---|",
    ]
    for key, row, program, right in TABLE:
        if row not in rows:
            continue
        cells = [results[b].get(key, "not run") for b in backends]
        out.append(
            f"| {program.format(**numbers)} | "
            + " | ".join(cells)
            + f" | {right.format(**numbers)} |"
        )
    return "\n".join(out)


def _commit(directory: Path) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), "log", "-1", "--format=%h %cs"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "commit unknown"
    return done.stdout.strip() or "not a git checkout"


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def header(scale: Scale) -> str:
    package = Path(conveyor.__file__).resolve().parent
    lines = [
        f"conveyor {getattr(conveyor, '__version__', '?')} from {package} "
        f"({_commit(package.parent)}); Python {sys.version.split()[0]}, "
        f"anyio {_version('anyio')}, trio {_version('trio')}; "
        f"{os.cpu_count()} CPUs, load average {_loadavg()} at the start",
        "Times in seconds since the pipeline was called (wall clock).",
    ]
    if scale != Scale():
        lines.append(
            f"--quick: sleeps x{scale.time:g}, row 4 with {scale.lines:,} lines "
            "(the table's shape, not the issue's figures)."
        )
    return "\n".join(lines)


async def run_rows(scale: Scale, rows: list[str]) -> dict[str, str]:
    runners: dict[str, Callable[[Scale], Any]] = {
        "1": row_1,
        "2": row_2,
        "3": row_3,
        "4": row_4,
    }
    results: dict[str, str] = {}
    for row in rows:
        if row in runners:
            results.update(await runners[row](scale))
    return results


def _trio_missing() -> bool:
    return importlib.util.find_spec("trio") is None


def _parse_rows(text: str) -> list[str]:
    rows = [r.strip() for r in text.split(",") if r.strip()]
    wrong = [r for r in rows if r not in ROWS]
    if wrong or not rows:
        raise argparse.ArgumentTypeError(
            f"--rows takes a comma-separated list of {', '.join(ROWS)}; got {text!r}"
        )
    return rows


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    parser.add_argument("--rows", type=_parse_rows, default=list(ROWS), help="e.g. 1,2,5")
    parser.add_argument(
        "--quick", action="store_true", help="sleeps x0.2 and 20,000 lines (for the tests)"
    )
    parser.add_argument(
        "--endless-guard",
        type=float,
        default=ENDLESS_GUARD,
        help="seconds row 5 waits for its values (default 10)",
    )
    parser.add_argument(
        "--memory-cap",
        type=int,
        default=2048,
        help="row 5's address-space cap in MB (default 2048)",
    )
    parser.add_argument("--endless-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(None if argv is None else list(argv))

    if args.endless_child:
        _run_endless_child(args.backend, args.endless_guard, args.memory_cap)
        return 0

    scale = Scale(time=0.2, lines=20_000) if args.quick else Scale()
    backends = list(BACKENDS) if args.backend == "both" else [args.backend]
    print(header(scale), flush=True)
    results: dict[str, dict[str, str]] = {}
    for backend in backends:
        if backend == "trio" and _trio_missing():
            results[backend] = {key: "n/a (trio is not installed)" for key, *_ in TABLE}
            continue
        print(f"[{backend}] rows {','.join(args.rows)} ...", file=sys.stderr, flush=True)
        results[backend] = anyio.run(run_rows, scale, args.rows, backend=backend)
        if "5" in args.rows:
            results[backend].update(row_5(backend, args.endless_guard, args.memory_cap))
    print()
    print(render(results, args.rows, scale))
    print()
    print(f"Load average {_loadavg()} at the end.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The benchmark workloads, shared by every case adapter.

One module defines what each workload feeds in, which stages it runs, how its
results are checked and what is measured; the adapters in this folder only
translate a `Plan` (a list of `Stage`s) into their library's idiom. A case
process runs ONE (workload, mode, backend) cell and prints ONE JSON line.

Standard library only (plus the backend's own module): the same file is run by
the project interpreter and by the peers' virtualenvs, which lack anyio.

Result statuses:
  ok     the run produced the right values in the right order within limits;
  WRONG  wrong/missing values, wrong order, a broken limit, or the library
         raised (the reason says which);
  n/a    the case cannot run this cell (unsupported mode/backend, library not
         importable).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import platform
import statistics
import sys
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

BACKENDS = ("asyncio", "uvloop", "trio")
MODES = ("ordered", "as_completed")

# Workers per stage (hand-written) / task_limit (aiostream) where a workload
# sets no limit and the library needs a number. conveyor and
# conveyor-streaming use their own defaults there.
DEFAULT_CONCURRENCY = 100


# --------------------------------------------------------------------------
# backend: the native sleep of the running event loop, bound at start-up
# --------------------------------------------------------------------------

_sleep: Callable[[float], Any] | None = None


def sleep(seconds: float) -> Any:
    """Await the running backend's own sleep (asyncio.sleep or trio.sleep)."""
    return _sleep(seconds)  # type: ignore[misc]


def run_on(backend: str, main: Callable[[], Any]) -> Any:
    """Run the coroutine function `main` to completion on `backend`."""
    global _sleep
    if backend == "trio":
        import trio

        _sleep = trio.sleep
        return trio.run(main)
    import asyncio

    _sleep = asyncio.sleep
    if backend == "uvloop":
        import uvloop

        return uvloop.run(main())
    if backend != "asyncio":
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    return asyncio.run(main())


# --------------------------------------------------------------------------
# the stage functions
# --------------------------------------------------------------------------


async def add1(x: int) -> int:
    return x + 1


async def mul2(x: int) -> int:
    return x * 2


async def sub3(x: int) -> int:
    return x - 3


def add1_sync(x: int) -> int:
    return x + 1


def mul2_sync(x: int) -> int:
    return x * 2


def sub3_sync(x: int) -> int:
    return x - 3


EXPANSION_PAUSE_EVERY = 1_000  # the issue's `lines` reader: `await sleep(0)` every 1,000 values


async def count_up(n: int) -> AsyncIterator[int]:
    """expansion, stage 1: one item expands to the values 0 .. n-1 (an async generator task).

    Like a reader yielding a file's lines, it lets other tasks run now and then.
    """
    for i in range(n):
        yield i
        if i % EXPANSION_PAUSE_EVERY == EXPANSION_PAUSE_EVERY - 1:
            await sleep(0)


async def check_record(item: dict) -> dict:
    """memory, stage 1: the guide's `validate_item`."""
    if "id" not in item:
        raise ValueError(f"bad record {item!r}")
    return item


async def record_id(item: dict) -> int:
    """memory, stage 2: the guide's `transform_item`."""
    return item["id"] + 1


@dataclass
class Probe:
    """Counts calls in flight (`peak`) and records batch sizes; reset per run."""

    current: int = 0
    peak: int = 0
    batch_sizes: list[int] = field(default_factory=list)

    def reset(self) -> None:
        self.current = self.peak = 0
        self.batch_sizes = []

    def enter(self) -> None:
        self.current += 1
        if self.current > self.peak:
            self.peak = self.current

    def leave(self) -> None:
        self.current -= 1


FANOUT_PROBE = Probe()
BATCH_PROBE = Probe()


@dataclass
class Clock:
    """trickle: when each item was yielded and when each batch call started
    (time.perf_counter(), the clock both backends' timers follow); rate: when
    each call started. Reset per run."""

    yielded: dict[int, float] = field(default_factory=dict)
    calls: list[tuple[float, list[int]]] = field(default_factory=list)
    started: list[float] = field(default_factory=list)

    def reset(self) -> None:
        self.yielded, self.calls, self.started = {}, [], []


CLOCK = Clock()

TIMELINE_DELAYS = [0.1, 0.2, 0.3, 0.4, 0.5, 2.0, 0.7, 0.8]  # the guide's
TIMELINE_SCALE = 0.1  # largest delay 200 ms
BATCH_ITEM_DELAY = 0.001
BATCH_CALL_DELAY = 0.010
BATCH_MAX_SIZE = 50
FANOUT_DELAY = 0.050
FANOUT_LIMIT = 100
BATCH4_CONCURRENCY = 4
TRICKLE_EVERY = 0.010  # one item every 10 ms
TRICKLE_MAX_SIZE = 50
TRICKLE_MAX_WAIT = 0.050
RATE = 500.0  # calls per second
RATE_BURST = 1
# Calls a span of time may see beyond the bound before the rate workload is
# WRONG: the limiter may grant one more (a late wake-up is charged up to one
# interval back), and the calls note their start a little after their token.
RATE_SLACK = 10


async def delayed(item: tuple[int, float]) -> int:
    """timeline: the guide's `variable_delay_task`; returns the item's index."""
    index, delay = item
    await sleep(delay)
    return index


async def step_1ms_add1(x: int) -> int:
    await sleep(BATCH_ITEM_DELAY)
    return x + 1


async def batch_10ms_mul2(items: list[int]) -> list[int]:
    BATCH_PROBE.batch_sizes.append(len(items))
    BATCH_PROBE.enter()
    try:
        await sleep(BATCH_CALL_DELAY)
    finally:
        BATCH_PROBE.leave()
    return [x * 2 for x in items]


async def step_1ms_sub3(x: int) -> int:
    await sleep(BATCH_ITEM_DELAY)
    return x - 3


async def batch_10ms_mul2_c4(items: list[int]) -> list[int]:
    """batch4: the same batch call, run 4 at a time."""
    return await batch_10ms_mul2(items)


async def stamp_batch(items: list[int]) -> list[int]:
    """trickle: note when the batch call starts."""
    CLOCK.calls.append((time.perf_counter(), list(items)))
    return items


async def limited_call(x: int) -> int:
    """rate: a trivial call, paced by the library's rate limit."""
    CLOCK.started.append(time.perf_counter())
    return x * 2


def _trickle(n: int) -> AsyncIterator[int]:
    async def gen() -> AsyncIterator[int]:
        for i in range(n):
            if i:
                await sleep(TRICKLE_EVERY)
            CLOCK.yielded[i] = time.perf_counter()
            yield i

    return gen()


async def io_call(x: int) -> int:
    FANOUT_PROBE.enter()
    try:
        await sleep(FANOUT_DELAY)
    finally:
        FANOUT_PROBE.leave()
    return x * 2


# --------------------------------------------------------------------------
# plans: what an adapter has to build
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One pipeline stage, described independently of any library.

    kind: "single" (fn takes one item) or "batch" (fn takes a list, returns a
    list of the same length). is_async: fn is a coroutine function.
    concurrency: the workload's cap on calls in flight (None = library
    default). cheap: the call never suspends (a chunking variant may batch
    such calls). expands: fn is an async generator function; each call
    yields many values, which flow on one by one (a single stage only).
    """

    fn: Callable[..., Any]
    kind: str = "single"
    is_async: bool = True
    concurrency: int | None = None
    max_size: int | None = None
    min_size: int = 1
    cheap: bool = False
    expands: bool = False
    max_wait: float | None = None  # batch: seconds the oldest value may wait
    rate: float | None = None  # calls per second (a rate limit), with `burst`
    burst: int = 1

    @property
    def name(self) -> str:
        return self.fn.__name__


@dataclass
class Plan:
    stages: list[Stage]
    # a fresh input per run: a list, or an async iterator (memory workload)
    make_input: Callable[[int], Any]
    source_is_async: bool = False


def _records(n: int) -> AsyncIterator[dict]:
    async def gen() -> AsyncIterator[dict]:
        for i in range(n):
            yield {"id": i, "data": f"item_{i}"}
            if i % 10_000 == 0:
                await sleep(0)  # the guide's "yield control periodically"

    return gen()


TRIVIAL_ASYNC = [Stage(add1, cheap=True), Stage(mul2, cheap=True), Stage(sub3, cheap=True)]
TRIVIAL_SYNC = [
    Stage(add1_sync, is_async=False),
    Stage(mul2_sync, is_async=False),
    Stage(sub3_sync, is_async=False),
]


def plan_for(workload: str) -> Plan:
    if workload == "overhead":
        return Plan(TRIVIAL_ASYNC, lambda n: list(range(n)))
    if workload == "sync":
        return Plan(TRIVIAL_SYNC, lambda n: list(range(n)))
    if workload == "memory":
        return Plan(
            [Stage(check_record, cheap=True), Stage(record_id, cheap=True)],
            _records,
            source_is_async=True,
        )
    if workload == "expansion":
        return Plan(
            [Stage(count_up, expands=True), Stage(add1, cheap=True), Stage(mul2, cheap=True)],
            lambda n: [n],  # one item, which expands to n values
        )
    if workload == "timeline":
        delays = [d * TIMELINE_SCALE for d in TIMELINE_DELAYS]
        return Plan([Stage(delayed)], lambda n: list(enumerate(delays)))
    if workload == "batch":
        return Plan(
            [
                Stage(step_1ms_add1),
                Stage(batch_10ms_mul2, kind="batch", max_size=BATCH_MAX_SIZE, min_size=1),
                Stage(step_1ms_sub3),
            ],
            lambda n: list(range(n)),
        )
    if workload == "fanout":
        return Plan([Stage(io_call, concurrency=FANOUT_LIMIT)], lambda n: list(range(n)))
    if workload == "batch4":
        return Plan(
            [
                Stage(step_1ms_add1),
                Stage(
                    batch_10ms_mul2_c4,
                    kind="batch",
                    max_size=BATCH_MAX_SIZE,
                    concurrency=BATCH4_CONCURRENCY,
                ),
                Stage(step_1ms_sub3),
            ],
            lambda n: list(range(n)),
        )
    if workload == "trickle":
        stage = Stage(
            stamp_batch, kind="batch", max_size=TRICKLE_MAX_SIZE, max_wait=TRICKLE_MAX_WAIT
        )
        return Plan([stage], _trickle, source_is_async=True)
    if workload == "rate":
        stage = Stage(limited_call, rate=RATE, burst=RATE_BURST)
        return Plan([stage], lambda n: list(range(n)))
    raise ValueError(f"unknown workload {workload!r}; expected one of {list(WORKLOADS)}")


# --------------------------------------------------------------------------
# workload catalogue (the runner reads this too)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    unit: str
    better: str  # "higher" or "lower"
    modes: tuple[str, ...]
    n: int
    quick_n: int
    measures: str
    # What a library must offer to run it (adapters list theirs in `features`):
    # "batch_concurrency", "max_wait", "rate_limit".
    needs: tuple[str, ...] = ()


WORKLOADS = {
    w.name: w
    for w in [
        Workload(
            "overhead",
            "overhead: 3 trivial async stages",
            "items/s",
            "higher",
            MODES,
            100_000,
            2_000,
            "x+1, x*2, x-3 as async functions that never suspend: pure per-item cost "
            "of the machinery.",
        ),
        Workload(
            "sync",
            "sync: 3 trivial sync stages",
            "items/s",
            "higher",
            MODES,
            100_000,
            2_000,
            "the same with plain `def` functions.",
        ),
        Workload(
            "memory",
            "memory: async generator, 2 stages",
            "MB",
            "lower",
            ("ordered",),
            1_000_000,
            20_000,
            "peak RSS growth (VmHWM) over a baseline taken after imports and a warm-up "
            "run, while N dict records from an async generator stream through 2 stages.",
        ),
        Workload(
            "expansion",
            "expansion: 1 item -> async generator of N values, 2 stages",
            "items/s",
            "higher",
            ("ordered",),
            1_000_000,
            20_000,
            "one input; an async generator task yields N values (`await sleep(0)` every "
            "1,000), then x+1 and x*2; values checked in order as they arrive. Also "
            "reported: peak RSS growth (as for `memory`) and the time to the first value.",
        ),
        Workload(
            "timeline",
            "timeline: guide's 8 delays x0.1, max lateness",
            "ms",
            "lower",
            MODES,
            8,
            8,
            "each result's arrival minus its ideal arrival (ordered: max delay so far; "
            "as-completed: own delay); the worst one.",
        ),
        Workload(
            "batch",
            "batch: 1 ms | batch(50) 10 ms | 1 ms",
            "s",
            "lower",
            ("ordered",),
            5_000,
            2_000,
            "makespan of single(1 ms) | batch(max_size=50, 10 ms per call, one call at a "
            "time) | single(1 ms).",
        ),
        Workload(
            "fanout",
            "fan-out I/O: 50 ms calls, limit 100",
            "s",
            "lower",
            ("ordered",),
            2_000,
            2_000,
            "makespan of N 50 ms sleeps with concurrency_limit=100; more than 100 in "
            "flight is WRONG.",
        ),
        Workload(
            "batch4",
            "batch4: 1 ms | batch(50) 10 ms, 4 at once | 1 ms",
            "s",
            "lower",
            ("ordered",),
            5_000,
            2_000,
            "the batch workload with concurrency_limit=4 on the batch stage; more than 4 "
            "batch calls at once is WRONG.",
            needs=("batch_concurrency",),
        ),
        Workload(
            "trickle",
            "trickle: 1 item / 10 ms, batch(50, max_wait 50 ms), worst lateness",
            "ms",
            "lower",
            MODES,
            200,
            50,
            "an async source yielding one item every 10 ms into batch(max_size=50, "
            "max_wait=0.05); for each batch call, its start minus its deadline (its first "
            "item's yield + 50 ms); the worst one.",
            needs=("max_wait",),
        ),
        Workload(
            "rate",
            "rate: 500 calls/s, burst 1, makespan",
            "s",
            "lower",
            ("ordered",),
            1_000,
            200,
            "makespan of N trivial calls under rate_limit 500/s, burst 1; more than "
            f"500 x W + 1 + {RATE_SLACK} calls starting in some span of W seconds is WRONG "
            "(the slack covers late wake-ups and the calls' own time stamps).",
            needs=("rate_limit",),
        ),
    ]
}


# the expansion workload's goal, from issue 9 (shown in the report, never asserted)
EXPANSION_GOAL_GAIN = 2.0
EXPANSION_GOAL_RSS_MB = 20.0
EXPANSION_GOAL_FIRST_MS = 10.0


def ideal(workload: str, n: int) -> tuple[float | None, str]:
    """The ideal value of a cell and how it is derived (shown in the output)."""
    if workload == "timeline":
        return 0.0, "0 ms: every result at its ideal time"
    if workload == "batch":
        calls = math.ceil(n / BATCH_MAX_SIZE)
        value = BATCH_ITEM_DELAY + calls * BATCH_CALL_DELAY + BATCH_ITEM_DELAY
        return value, (
            f"{BATCH_ITEM_DELAY * 1e3:g} ms + {calls} batch calls x "
            f"{BATCH_CALL_DELAY * 1e3:g} ms (one at a time) + "
            f"{BATCH_ITEM_DELAY * 1e3:g} ms = {value:.3f} s"
        )
    if workload == "batch4":
        calls = math.ceil(n / BATCH_MAX_SIZE)
        waves = math.ceil(calls / BATCH4_CONCURRENCY)
        value = BATCH_ITEM_DELAY + waves * BATCH_CALL_DELAY + BATCH_ITEM_DELAY
        return value, (
            f"{BATCH_ITEM_DELAY * 1e3:g} ms + {waves} waves of {BATCH4_CONCURRENCY} batch "
            f"calls x {BATCH_CALL_DELAY * 1e3:g} ms + {BATCH_ITEM_DELAY * 1e3:g} ms "
            f"= {value:.3f} s"
        )
    if workload == "trickle":
        return 0.0, "0 ms: every batch call starts at its deadline"
    if workload == "rate":
        value = n / RATE
        return value, f"{n} calls / {RATE:g} per s = {value:.3f} s"
    if workload == "fanout":
        waves = math.ceil(n / FANOUT_LIMIT)
        value = waves * FANOUT_DELAY
        return value, f"{n}/{FANOUT_LIMIT} waves x {FANOUT_DELAY * 1e3:g} ms = {value:.3f} s"
    if workload == "memory":
        return None, "flat: does not grow with N"
    if workload == "expansion":
        return None, (
            f"none (throughput); goal (issue 9): >= {EXPANSION_GOAL_GAIN:g}x conveyor-streaming's "
            f"items/s, peak RSS growth < {EXPANSION_GOAL_RSS_MB:g} MB, first value < "
            f"{EXPANSION_GOAL_FIRST_MS:g} ms"
        )
    return None, ""


# --------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------


class Wrong(Exception):
    """The run's results are not right (values, order, a limit)."""


class BuildFailed(Exception):
    """The library could not build the workload's pipeline (an option it lacks, say)."""


def _proc_status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_kb() -> int:
    hwm = _proc_status_kb("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux


def _expected_scalar(workload: str, x: int) -> int:
    if workload in ("fanout", "rate"):
        return x * 2
    if workload == "trickle":
        return x
    assert workload in ("overhead", "sync", "batch", "batch4"), workload
    return (x + 1) * 2 - 3  # +1, *2, -3


def _check_values(workload: str, mode: str, inputs: list, results: list) -> None:
    expected = [_expected_scalar(workload, x) for x in inputs]
    if len(results) != len(expected):
        raise Wrong(f"{len(results)} results for {len(expected)} inputs")
    if mode == "ordered":
        if results != expected:
            i = next(i for i, (a, b) in enumerate(zip(results, expected, strict=True)) if a != b)
            raise Wrong(f"result #{i} is {results[i]!r}, expected {expected[i]!r} (order or value)")
    elif sorted(results) != sorted(expected):
        raise Wrong("as-completed results are not the expected values")


def _cpu_detail(n: int, cpu_s: float) -> dict[str, float]:
    """CPU seconds of a throughput run, and items per CPU second.

    On a machine shared with other work, wall time counts the time the process
    waited for a core; CPU time counts only its own work, so comparisons made
    on it (same run, same machine) are far less noisy.
    """
    return {"cpu_s": round(cpu_s, 4), "items_per_cpu_s": round(n / cpu_s) if cpu_s > 0 else 0}


@dataclass
class Measured:
    value: float
    detail: dict[str, Any] = field(default_factory=dict)


async def _run_once(
    adapter: Any, built: Any, plan: Plan, workload: str, mode: str, n: int
) -> Measured:
    """One timed run; raises Wrong if the results are not right."""
    FANOUT_PROBE.reset()
    BATCH_PROBE.reset()
    CLOCK.reset()
    source = plan.make_input(n)
    inputs = None if plan.source_is_async else list(source)
    if workload == "trickle":
        inputs = list(range(n))

    if workload == "timeline":
        arrivals: list[tuple[float, int]] = []
        t0 = time.perf_counter()
        async with adapter.open(built, source, mode) as stream:
            async for r in stream:
                arrivals.append((time.perf_counter() - t0, r))
        delays = [d for _, d in inputs]
        got = [r for _, r in arrivals]
        want = (
            list(range(len(delays)))
            if mode == "ordered"
            else sorted(range(len(delays)), key=lambda i: delays[i])
        )
        if got != want:
            raise Wrong(f"arrival order {got}, expected {want}")
        lateness = []
        for t, r in arrivals:
            ideal_t = max(delays[: r + 1]) if mode == "ordered" else delays[r]
            lateness.append((t - ideal_t) * 1e3)
        return Measured(
            max(lateness),
            {
                "lateness_ms": [round(x, 2) for x in lateness],
                "makespan_s": round(arrivals[-1][0], 4),
            },
        )

    if workload == "expansion":
        (total,) = inputs
        count = 0
        first_s = None
        c0 = time.process_time()
        t0 = time.perf_counter()  # the clock starts before the run does, as for the timeline
        async with adapter.open(built, source, mode) as stream:
            async for r in stream:
                if first_s is None:
                    first_s = time.perf_counter() - t0
                if r != (count + 1) * 2:
                    raise Wrong(f"value #{count} is {r!r}, expected {(count + 1) * 2} (order?)")
                count += 1
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - c0
        if count != total:
            raise Wrong(f"{count} values for an item that expands to {total}")
        return Measured(
            total / elapsed,
            {
                "elapsed_s": round(elapsed, 4),
                "first_value_ms": round((first_s or 0) * 1e3, 3),
                **_cpu_detail(total, cpu),
            },
        )

    if workload == "memory":
        count = 0
        t0 = time.perf_counter()
        async with adapter.open(built, source, mode) as stream:
            async for r in stream:
                if r != count + 1:
                    raise Wrong(f"result #{count} is {r!r}, expected {count + 1}")
                count += 1
        elapsed = time.perf_counter() - t0
        if count != n:
            raise Wrong(f"{count} results for {n} inputs")
        return Measured(0.0, {"elapsed_s": round(elapsed, 3), "items_per_s": round(n / elapsed)})

    results: list = []
    append = results.append
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    async with adapter.open(built, source, mode) as stream:
        async for r in stream:
            append(r)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    _check_values(workload, mode, inputs, results)

    if workload in ("overhead", "sync"):
        return Measured(n / elapsed, {"elapsed_s": round(elapsed, 4), **_cpu_detail(n, cpu)})
    if workload == "batch":
        sizes = BATCH_PROBE.batch_sizes
        if sum(sizes) != n:
            raise Wrong(f"batch calls saw {sum(sizes)} items for {n} inputs")
        if max(sizes) > BATCH_MAX_SIZE:
            raise Wrong(f"a batch of {max(sizes)} items (max_size={BATCH_MAX_SIZE})")
        return Measured(
            elapsed,
            {
                "batch_calls": len(sizes),
                "mean_batch": round(sum(sizes) / len(sizes), 1),
                "batch_calls_in_flight_peak": BATCH_PROBE.peak,
            },
        )
    if workload == "batch4":
        sizes = BATCH_PROBE.batch_sizes
        if sum(sizes) != n:
            raise Wrong(f"batch calls saw {sum(sizes)} items for {n} inputs")
        if max(sizes) > BATCH_MAX_SIZE:
            raise Wrong(f"a batch of {max(sizes)} items (max_size={BATCH_MAX_SIZE})")
        if BATCH_PROBE.peak > BATCH4_CONCURRENCY:
            raise Wrong(f"{BATCH_PROBE.peak} batch calls at once (limit {BATCH4_CONCURRENCY})")
        return Measured(
            elapsed,
            {
                "batch_calls": len(sizes),
                "mean_batch": round(sum(sizes) / len(sizes), 1),
                "batch_calls_in_flight_peak": BATCH_PROBE.peak,
                "cpu_s": round(cpu, 3),  # the process's CPU time: under load, compare
            },
        )
    if workload == "trickle":
        return _trickle_lateness(n)
    if workload == "rate":
        measured = _rate_check(elapsed)
        measured.detail["cpu_s"] = round(cpu, 3)
        return measured
    if workload == "fanout":
        if FANOUT_PROBE.peak > FANOUT_LIMIT:
            raise Wrong(f"{FANOUT_PROBE.peak} calls in flight (limit {FANOUT_LIMIT})")
        return Measured(elapsed, {"in_flight_peak": FANOUT_PROBE.peak})
    raise AssertionError(workload)


async def _run_measuring_rss(
    adapter: Any, built: Any, plan: Plan, workload: str, mode: str, n: int
) -> Measured:
    """One run, with its peak RSS growth over the RSS before it in `detail`."""
    gc.collect()
    reset = _reset_peak_rss()
    base_kb = _proc_status_kb("VmRSS") if reset else _peak_rss_kb()
    m = await _run_once(adapter, built, plan, workload, mode, n)
    growth_mb = max(0, _peak_rss_kb() - (base_kb or 0)) / 1024
    m.detail.update(
        rss_growth_mb=round(growth_mb, 2),
        baseline_mb=round((base_kb or 0) / 1024, 1),
        peak_reset=reset,
    )
    return m


def summarize(workload: str, values: list[float], details: list[dict[str, Any]]) -> dict[str, Any]:
    """The cell's value and detail from its timed runs (also merges interleaved processes).

    Throughput: the best run (noise only slows); times: the median run. The
    expansion's side figures: the worst RSS growth and the median first value.
    """
    if WORKLOADS[workload].better == "higher":
        best = max(range(len(values)), key=lambda i: values[i])
        value = values[best]
    else:
        value = statistics.median(values)
        best = min(range(len(values)), key=lambda i: abs(values[i] - value))  # the median run
    detail = dict(details[best])
    if workload == "expansion":
        detail["rss_growth_mb"] = max(d["rss_growth_mb"] for d in details)
        detail["first_value_ms"] = statistics.median(d["first_value_ms"] for d in details)
        detail["first_value_ms_runs"] = [d["first_value_ms"] for d in details]
        detail["rss_growth_mb_runs"] = [d["rss_growth_mb"] for d in details]
    return {"value": value, "runs": values, "detail": detail, "run_details": details}


def _trickle_lateness(n: int) -> Measured:
    """Each batch call's start minus its deadline (its first item's yield + max_wait)."""
    seen = sorted(x for _, batch in CLOCK.calls for x in batch)
    if seen != list(range(n)):
        raise Wrong(f"batch calls saw {len(seen)} items for {n} inputs")
    if max(len(batch) for _, batch in CLOCK.calls) > TRICKLE_MAX_SIZE:
        raise Wrong(f"a batch over max_size={TRICKLE_MAX_SIZE}")
    lateness = []
    last = n - 1
    for started, batch in CLOCK.calls:
        if last in batch:
            continue  # the end of the input calls the last batch at once
        deadline = min(CLOCK.yielded[x] for x in batch) + TRICKLE_MAX_WAIT
        lateness.append((started - deadline) * 1e3)
    if not lateness:
        raise Wrong("no batch was called by its deadline (too few items?)")
    return Measured(
        max(lateness),
        {
            "batch_calls": len(CLOCK.calls),
            "mean_batch": round(n / len(CLOCK.calls), 1),
            "median_lateness_ms": round(statistics.median(lateness), 2),
        },
    )


def _rate_check(elapsed: float) -> Measured:
    """WRONG if more than RATE * W + burst + RATE_SLACK calls start within some W seconds."""
    times = sorted(CLOCK.started)
    worst = 0.0
    first = 0
    for last, t in enumerate(times):
        while t - times[first] > 1.0:  # spans of up to 1 s
            first += 1
        for start in range(first, last + 1):
            excess = (last - start + 1) - (RATE * (t - times[start]) + RATE_BURST)
            worst = max(worst, excess)
    if worst > RATE_SLACK:
        raise Wrong(f"{worst:.2f} calls over the rate limit in some span of time")
    return Measured(elapsed, {"calls": len(times), "over_limit_max": round(worst, 3)})


async def measure(adapter: Any, workload: str, mode: str, n: int, repeat: int) -> dict[str, Any]:
    """Warm up, then run `repeat` timed runs; returns the fields of the JSON line."""
    plan = plan_for(workload)
    try:
        built = adapter.build(plan)
    except Exception as e:
        raise BuildFailed(f"{type(e).__name__}: {e}") from e

    # warm-up: imports, lazily created structures, caches
    timed = ("timeline", "batch", "batch4", "fanout", "rate")
    warm_n = min(n, 20) if workload == "trickle" else min(n, 100 if workload in timed else 1_000)
    await _run_once(adapter, built, plan, workload, mode, warm_n)

    if workload == "memory":
        m = await _run_measuring_rss(adapter, built, plan, workload, mode, n)
        growth_mb = m.detail["rss_growth_mb"]
        return summarize(workload, [growth_mb], [m.detail])

    run = _run_measuring_rss if workload == "expansion" else _run_once
    runs = [await run(adapter, built, plan, workload, mode, n) for _ in range(repeat)]
    return summarize(workload, [r.value for r in runs], [r.detail for r in runs])


# --------------------------------------------------------------------------
# the case command line: one cell, one JSON line
# --------------------------------------------------------------------------


def _library_info(module_name: str | None) -> dict[str, Any]:
    if not module_name:
        return {}
    info: dict[str, Any] = {}
    mod = sys.modules.get(module_name)
    if mod is not None:
        info["module_file"] = getattr(mod, "__file__", None)
    try:
        from importlib import metadata

        dists = metadata.packages_distributions().get(module_name) or [module_name]
        info["distributions"] = {}
        for d in dists:
            with contextlib.suppress(metadata.PackageNotFoundError):
                info["distributions"][d] = metadata.version(d)
    except Exception:  # metadata is informative only
        pass
    return info


# a missing one of these makes a case "n/a"; any other import error is WRONG
_LIBRARIES = {"conveyor", "aiostream", "anyio", "trio", "uvloop"}


def main(
    case: str, make_adapter: Callable[[argparse.Namespace], Any], argv: Iterable[str] | None = None
) -> int:
    """Entry point of every case module: `--workload X --backend Y --n N`.

    `make_adapter(args)` imports the library under test and returns an object
    with: `name`, `module` (the imported module's name, for the report),
    `unsupported(workload, mode, backend) -> reason | None`,
    `check_library() -> reason | None`, `build(plan) -> built` (untimed) and
    `open(built, source, mode)`, an async context manager yielding the async
    iterator of results (timed).
    """
    p = argparse.ArgumentParser(description="Run one benchmark cell; print one JSON line.")
    p.add_argument("--workload", required=True, choices=list(WORKLOADS))
    p.add_argument("--backend", default="asyncio", choices=BACKENDS)
    p.add_argument("--mode", default="ordered", choices=MODES)
    p.add_argument("--n", type=int, default=None, help="items (default: the workload's full N)")
    p.add_argument("--repeat", type=int, default=1, help="timed runs (after one warm-up)")
    p.add_argument("--variant", default="default", help="adapter variant (see the case module)")
    p.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help="workers / task_limit where the workload sets no limit",
    )
    args = p.parse_args(list(argv) if argv is not None else None)

    wl = WORKLOADS[args.workload]
    n = args.n if args.n is not None else wl.n
    if args.workload == "timeline":
        n = len(TIMELINE_DELAYS)
    ideal_value, ideal_text = ideal(args.workload, n)
    out: dict[str, Any] = {
        "workload": args.workload,
        "mode": args.mode,
        "backend": args.backend,
        "variant": args.variant,
        "n": n,
        "unit": wl.unit,
        "better": wl.better,
        "ideal": ideal_value,
        "ideal_text": ideal_text,
        "case": case,
        "python": platform.python_version(),
        "status": None,
    }

    def emit(**fields: Any) -> int:
        out.update(fields)
        print(json.dumps(out), flush=True)
        return {"ok": 0, "n/a": 0, "WRONG": 1}[out["status"]]

    try:
        adapter = make_adapter(args)
    except ModuleNotFoundError as e:
        if e.name not in _LIBRARIES:
            raise
        return emit(status="n/a", reason=f"not installed: {e}")
    except Exception as e:  # the library is there but broken: no right result
        traceback.print_exc(file=sys.stderr)
        return emit(status="WRONG", reason=f"import failed: {type(e).__name__}: {e}"[:500])
    reason = adapter.unsupported(args.workload, args.mode, args.backend)
    lacking = [need for need in wl.needs if need not in getattr(adapter, "features", ())]
    if lacking and not reason:
        reason = f"{adapter.name} has no {', '.join(lacking)}"
    if args.mode not in wl.modes:
        reason = f"{args.workload} runs in {'/'.join(wl.modes)} mode only"
    if reason:
        return emit(status="n/a", reason=reason)
    backend_module = {"uvloop": "uvloop", "trio": "trio"}.get(args.backend)
    if backend_module:
        try:
            __import__(backend_module)
        except ImportError as e:
            return emit(status="n/a", reason=f"backend {args.backend} not importable: {e}")
    out["library"] = _library_info(adapter.module)
    try:
        bad = adapter.check_library()
    except Exception as e:  # pragma: no cover - defensive
        bad = repr(e)
    if bad:
        return emit(status="n/a", reason=bad)

    async def go() -> dict[str, Any]:
        return await measure(adapter, args.workload, args.mode, n, max(1, args.repeat))

    try:
        with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the JSON line
            res = run_on(args.backend, go)
    except Wrong as e:
        return emit(status="WRONG", reason=str(e))
    except BuildFailed as e:  # WRONG too; run.py tells a baseline's missing feature by it
        traceback.print_exc(file=sys.stderr)
        return emit(status="WRONG", reason=f"building the pipeline raised {e}"[:500], phase="build")
    except BaseException as e:  # the library raised: no right result
        traceback.print_exc(file=sys.stderr)
        return emit(status="WRONG", reason=f"raised {type(e).__name__}: {e}"[:500])
    note = getattr(adapter, "note", None)
    return emit(status="ok", **res, **({"note": note} if note else {}))


@contextlib.asynccontextmanager
async def iterate(it: Any) -> AsyncIterator[Any]:
    """Hand an async iterator to the measuring loop; close it on the way out."""
    try:
        yield it
    finally:
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            await aclose()


async def aiter_list(items: list) -> AsyncIterator[Any]:
    for x in items:
        yield x

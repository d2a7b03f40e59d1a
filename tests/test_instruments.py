"""Instruments: hooks that watch runs and calls, attached per pipeline or per run."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from conveyor import CallInfo, Instrument, RunInfo, batch_task, single_task

from .conftest import virtual_clock

pytestmark = pytest.mark.anyio


class Recorder(Instrument):
    """Writes down every hook call as a tuple."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.calls: list[CallInfo] = []

    def run_started(self, run: RunInfo) -> None:
        self.events.append(("run_started", run.stages, run.total))

    def run_finished(self, run: RunInfo) -> None:
        self.events.append(("run_finished", type(run.error).__name__ if run.error else None))

    def call_started(self, call: CallInfo) -> None:
        self.events.append(("started", call.stage, call.value, call.attempt))

    def call_finished(self, call: CallInfo) -> None:
        self.calls.append(call)
        self.events.append(("finished", call.stage, call.value, call.attempt))

    def call_failed(self, call: CallInfo) -> None:
        self.calls.append(call)
        self.events.append(("failed", call.stage, call.value, call.attempt, call.cancelled))

    def call_retried(self, call: CallInfo) -> None:
        self.events.append(("retried", call.stage, call.value, call.retry_delay))

    def values_released(self, run: RunInfo, count: int) -> None:
        self.events.append(("released", count))

    def count(self, kind: str, stage: str | None = None) -> int:
        return sum(1 for e in self.events if e[0] == kind and (stage is None or e[1] == stage))


def flaky_task() -> Any:
    """Fails the first try of multiples of 3, and every try of multiples of 10."""
    tried: set[int] = set()

    @single_task(retry_attempts=2, retry_delay=0.0, on_error="skip_item")
    async def flaky(x: int) -> int:
        if x % 10 == 0 or (x % 3 == 0 and x not in tried):
            tried.add(x)
            raise ValueError(x)
        return x

    return flaky


async def test_call_hooks_count_the_items_retries_and_failures_of_a_run() -> None:
    recorder = Recorder()
    results = await flaky_task().with_instruments(recorder)(range(1, 31)).collect()

    # 30 items; 12 fail their first try (3, 6, ..., 30 and 10, 20) and are
    # tried again; 10, 20 and 30 fail again and are skipped.
    assert len(results) == 27
    assert recorder.count("started") == 30 + 12
    assert recorder.count("failed") == 12 + 3
    assert recorder.count("retried") == 12
    assert recorder.count("finished") == 27
    assert recorder.events[0] == ("run_started", ("flaky",), 30)
    assert recorder.events[-1] == ("run_finished", None)


async def test_a_retry_is_announced_after_the_failure_and_before_the_next_try() -> None:
    recorder = Recorder()
    await flaky_task().with_instruments(recorder)([3]).collect()

    assert [e[0] for e in recorder.events] == [
        "run_started",
        "started",
        "failed",
        "retried",
        "started",
        "finished",
        "released",
        "run_finished",
    ]
    assert recorder.events[3] == ("retried", "flaky", 3, 0.0)


async def test_a_batch_call_reports_its_list_and_size() -> None:
    @batch_task(max_size=4)
    def total(batch: list[int]) -> int:
        return sum(batch)

    recorder = Recorder()
    assert await total.with_instruments(recorder)(range(10)).collect() == [6, 22, 17]
    assert [(c.kind, c.value, c.size) for c in recorder.calls] == [
        ("batch", [0, 1, 2, 3], 4),
        ("batch", [4, 5, 6, 7], 4),
        ("batch", [8, 9], 2),
    ]


@virtual_clock
async def test_calls_carry_their_start_and_duration_on_the_backend_clock() -> None:
    @single_task
    async def wait(seconds: int) -> int:
        await anyio.sleep(seconds)
        return seconds

    recorder = Recorder()
    start = anyio.current_time()
    await wait.with_instruments(recorder)([3, 1, 2]).collect()

    assert sorted((c.value, c.started - start, c.duration) for c in recorder.calls) == [
        (1, 0.0, 1.0),
        (2, 0.0, 2.0),
        (3, 0.0, 3.0),
    ]


async def test_a_stopped_run_ends_its_calls_in_flight_as_cancelled() -> None:
    started = anyio.Event()

    @single_task
    async def forever(x: int) -> int:
        started.set()
        await anyio.sleep_forever()
        return x

    recorder = Recorder()
    with anyio.CancelScope() as scope:
        async with forever.with_instruments(recorder).open([1]) as results:
            await started.wait()
            scope.cancel()
            await results.__anext__()

    assert [e for e in recorder.events if e[0] == "failed"] == [("failed", "forever", 1, 1, True)]
    assert recorder.events[-1][0] == "run_finished"


async def test_run_finished_says_how_the_run_failed() -> None:
    @single_task
    def boom(x: int) -> int:
        raise KeyError(x)

    recorder = Recorder()
    with pytest.raises(KeyError):
        await boom.with_instruments(recorder)([1]).collect()
    assert recorder.events[-1] == ("run_finished", "KeyError")


async def test_released_counts_add_up_to_the_results() -> None:
    @single_task
    def spread(x: int) -> list[int]:
        return [x] * 3

    recorder = Recorder()
    results = await spread.with_instruments(recorder)(range(100)).collect()
    assert sum(e[1] for e in recorder.events if e[0] == "released") == len(results) == 300


async def test_total_is_the_input_length_when_it_has_one() -> None:
    async def numbers() -> Any:
        for i in range(3):
            yield i

    @single_task
    def same(x: int) -> int:
        return x

    recorder = Recorder()
    await same.with_instruments(recorder)(numbers()).collect()
    await same.with_instruments(recorder)([1, 2]).collect()
    await same.with_instruments(recorder)("one item").collect()
    assert [e[2] for e in recorder.events if e[0] == "run_started"] == [None, 2, 1]


async def test_pipeline_and_run_instruments_are_all_called_and_a_repeat_once() -> None:
    @single_task
    def same(x: int) -> int:
        return x

    first, second = Recorder(), Recorder()
    pipeline = same.with_instruments(first)
    await pipeline([1, 2]).with_instruments(second, first).collect()
    assert first.count("finished") == second.count("finished") == 2


async def test_instruments_survive_composition() -> None:
    @single_task
    def one(x: int) -> int:
        return x

    @single_task
    def two(x: int) -> int:
        return x

    left, right = Recorder(), Recorder()
    pipeline = one.with_instruments(left) | two.with_instruments(right)
    await pipeline.with_execution_mode("as_completed")([1]).collect()
    assert left.count("finished") == right.count("finished") == 2


async def test_only_the_hooks_an_instrument_defines_are_called() -> None:
    class RunsOnly(Instrument):
        def __init__(self) -> None:
            self.runs: list[str] = []

        def run_started(self, run: RunInfo) -> None:
            self.runs.append(run.run_id)

    @single_task
    def same(x: int) -> int:
        return x

    runs_only = RunsOnly()
    stream = same.with_instruments(runs_only)([1])
    await stream.collect()
    assert len(runs_only.runs) == 1


async def test_a_run_without_instruments_builds_nothing_for_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from conveyor._engine import _run

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("instrument machinery built for a run with no instrument")

    monkeypatch.setattr(_run, "Dispatch", forbidden)
    monkeypatch.setattr(_run, "RunInfo", forbidden)

    @single_task
    def plain(x: int) -> int:
        return x

    @single_task(retry_attempts=2, retry_delay=0.0)  # the policy path
    def retried(x: int) -> int:
        return x

    async with (plain | retried).open(range(10)) as results:
        assert [x async for x in results] == list(range(10))
        assert results._on_released is None  # the consumer's path checks nothing per value


async def test_an_instrument_need_not_subclass_instrument() -> None:
    class Duck:
        def __init__(self) -> None:
            self.finished = 0

        def call_finished(self, call: CallInfo) -> None:
            self.finished += 1

    @single_task
    def same(x: int) -> int:
        return x

    duck = Duck()
    await same.with_instruments(duck)(range(5)).collect()
    assert duck.finished == 5


async def test_a_failing_instrument_is_logged_and_detached_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Instrument):
        def __init__(self) -> None:
            self.calls = 0

        def call_started(self, call: CallInfo) -> None:
            self.calls += 1
            raise RuntimeError("oops")

    @single_task
    def same(x: int) -> int:
        return x

    broken, recorder = Broken(), Recorder()
    with caplog.at_level(logging.ERROR, logger="conveyor"):
        results = await same.with_instruments(broken, recorder)(range(5)).collect()
    assert results == [0, 1, 2, 3, 4]
    assert broken.calls == 1
    assert recorder.count("finished") == 5
    [record] = caplog.records
    assert "raised in call_started and is detached" in record.getMessage()
    # Where it happened, as every record of conveyor's says (docs/observability.md).
    assert record.conveyor_stage == "same"  # type: ignore[attr-defined]
    assert record.getMessage().endswith(f" [conveyor run {record.conveyor_run_id} stage 'same']")  # type: ignore[attr-defined]


@virtual_clock
async def test_monitor_runs_as_a_task_of_the_run_until_it_ends() -> None:
    class Ticker(Instrument):
        def __init__(self) -> None:
            self.ticks: list[int] = []
            self.finished_after: int | None = None

        async def monitor(self, run: RunInfo) -> None:
            while True:
                await anyio.sleep(1)
                self.ticks.append(run.statistics().results_released)

        def run_finished(self, run: RunInfo) -> None:
            self.finished_after = len(self.ticks)

    @single_task(concurrency_limit=1)
    async def slow(x: int) -> int:
        await anyio.sleep(2.2)
        return x

    ticker = Ticker()
    await slow.with_instruments(ticker)(range(4)).collect()
    # Results at 2.2, 4.4, 6.6 and 8.8 s; a tick a second, none after the end.
    assert ticker.ticks == [0, 0, 1, 1, 2, 2, 3, 3]
    assert ticker.finished_after == 8


def test_with_instruments_rejects_objects_without_hooks() -> None:
    @single_task
    def same(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="instruments must be objects with at least one hook"):
        same.with_instruments(object())
    with pytest.raises(TypeError, match="Recorder"):
        same.with_instruments(Recorder)  # the class, not an instance


async def test_instruments_of_a_stream_are_set_before_iterating() -> None:
    @single_task
    def same(x: int) -> int:
        return x

    stream = same([1])
    await stream.collect()
    with pytest.raises(RuntimeError, match="before the stream is iterated"):
        stream.with_instruments(Recorder())

"""OpenTelemetry traces and metrics (conveyor.integrations.otel), checked with the
SDK's in-memory span exporter and metric reader."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from conveyor import SingleTask, batch_task, single_task
from conveyor.integrations.otel import OpenTelemetry

from . import executor_functions as fn

pytestmark = pytest.mark.anyio


class Telemetry:
    """An SDK tracer and meter provider that keep what they get in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.tracer = self.tracer_provider.get_tracer("tests")

    def instrument(self, **options: Any) -> OpenTelemetry:
        return OpenTelemetry(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **options
        )

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        spans = self.exporter.get_finished_spans()
        return [span for span in spans if name is None or span.name == name]

    def parent_of(self, span: ReadableSpan) -> ReadableSpan | None:
        if span.parent is None:
            return None
        [parent] = [s for s in self.spans() if s.context.span_id == span.parent.span_id]
        return parent

    def points(self, metric: str) -> dict[str, Any]:
        """{stage name: value (sum, count of a histogram, or gauge value)}, over all
        the stage's points (failures, for example, also carry ``error.type``)."""
        found: dict[str, Any] = {}
        data = self.reader.get_metrics_data()
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    if m.name != metric:
                        continue
                    for point in m.data.data_points:
                        stage = point.attributes["conveyor.stage.name"]
                        value = getattr(point, "value", None)
                        if value is None:
                            value = point.count
                        found[stage] = found.get(stage, 0) + value
        return found


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    t = Telemetry()
    yield t
    t.tracer_provider.shutdown()
    t.meter_provider.shutdown()


@single_task
async def double(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return 2 * x


@batch_task(max_size=3)
def total(batch: list[int]) -> int:
    return sum(batch)


async def test_a_run_span_is_a_child_of_the_callers_span(telemetry: Telemetry) -> None:
    pipeline = (double | total).with_instruments(telemetry.instrument())
    with telemetry.tracer.start_as_current_span("request"):
        assert await pipeline(range(6)).collect() == [6, 24]

    [run] = telemetry.spans("conveyor.run")
    parent = telemetry.parent_of(run)
    assert parent is not None
    assert parent.name == "request"
    assert run.attributes is not None
    assert dict(run.attributes) == {
        "conveyor.run.id": run.attributes["conveyor.run.id"],
        "conveyor.run.stages": ("double", "total"),
        "conveyor.run.ordered": True,
        "conveyor.run.total": 6,
        "conveyor.run.items_read": 6,
        "conveyor.run.results_released": 2,
        "conveyor.run.failures": 0,
        "conveyor.run.outcome": "done",
    }
    assert telemetry.spans("conveyor.call") == []  # call spans are opt-in


async def test_a_run_started_inside_a_task_group_keeps_its_parent(telemetry: Telemetry) -> None:
    pipeline = double.with_instruments(telemetry.instrument())

    async def one_request(name: str) -> None:
        with telemetry.tracer.start_as_current_span(name):
            async for _ in pipeline(range(3)):
                pass

    async with anyio.create_task_group() as tg:
        tg.start_soon(one_request, "first")
        tg.start_soon(one_request, "second")

    parents = sorted(telemetry.parent_of(run).name for run in telemetry.spans("conveyor.run"))  # type: ignore[union-attr]
    assert parents == ["first", "second"]


async def test_call_spans_are_children_of_the_run_span_one_per_call(
    telemetry: Telemetry,
) -> None:
    pipeline = (double | total).with_instruments(telemetry.instrument(call_spans=True))
    assert await pipeline(range(7)).collect() == [6, 24, 12]

    [run] = telemetry.spans("conveyor.run")
    calls = telemetry.spans("conveyor.call")
    assert len(calls) == 7 + 3
    assert all(telemetry.parent_of(call) == run for call in calls)
    batch_calls = sorted(
        (dict(c.attributes or {}) for c in calls if c.attributes["conveyor.stage.kind"] == "batch"),  # type: ignore[index]
        key=lambda a: a["conveyor.call.size"],
    )
    assert batch_calls[0] == {
        "conveyor.stage.name": "total",
        "conveyor.stage.kind": "batch",
        "conveyor.stage.index": 1,
        "conveyor.call.attempt": 1,
        "conveyor.call.size": 1,
    }


async def test_a_call_in_a_thread_is_traced_and_its_spans_are_its_children(
    telemetry: Telemetry,
) -> None:
    threads: set[int] = set()

    @single_task(run_in_thread=True)
    def work(x: int) -> int:
        threads.add(threading.get_ident())
        with telemetry.tracer.start_as_current_span("inside"):
            return x

    pipeline = work.with_instruments(telemetry.instrument(call_spans=True))
    assert await pipeline(range(4)).collect() == [0, 1, 2, 3]

    assert threading.get_ident() not in threads
    [run] = telemetry.spans("conveyor.run")
    calls = telemetry.spans("conveyor.call")
    inside = telemetry.spans("inside")
    assert len(calls) == len(inside) == 4
    assert all(telemetry.parent_of(call) == run for call in calls)
    assert {telemetry.parent_of(span).context.span_id for span in inside} == {  # type: ignore[union-attr]
        call.context.span_id for call in calls
    }


async def test_a_call_in_an_executors_round_trip_is_traced_from_when_it_was_sent(
    telemetry: Telemetry,
) -> None:
    # Such a call is announced when the round trip's reply comes back, yet its
    # span covers the round trip, which lasts at least the call's 50 ms.
    with ThreadPoolExecutor(1) as pool:
        slow = SingleTask(fn.sleepy, executor=pool)
        pipeline = slow.with_instruments(telemetry.instrument(call_spans=True))
        assert await pipeline([0.05]).collect() == [0.05]

    [call] = telemetry.spans("conveyor.call")
    assert call.end_time is not None
    assert call.start_time is not None
    assert call.end_time - call.start_time >= 50_000_000  # ns


async def test_failed_calls_and_retries_are_traced_and_counted(telemetry: Telemetry) -> None:
    tried: set[int] = set()

    @single_task(retry_attempts=2, retry_delay=0.0, on_error="skip_item")
    def flaky(x: int) -> int:
        if x == 4 or (x % 2 and x not in tried):  # odd items fail once, 4 always
            tried.add(x)
            raise ValueError(x)
        return x

    pipeline = flaky.with_instruments(telemetry.instrument(call_spans=True))
    assert await pipeline(range(6)).collect() == [0, 1, 2, 3, 5]

    calls = telemetry.spans("conveyor.call")
    failed = [c for c in calls if c.status.status_code is StatusCode.ERROR]
    assert len(calls) == 6 + 4  # 3 odd items and 4 were tried twice
    assert len(failed) == 3 + 2
    assert all(c.attributes["error.type"] == "ValueError" for c in failed)  # type: ignore[index]
    assert all(c.events[0].name == "exception" for c in failed)
    assert telemetry.points("conveyor.stage.items") == {"flaky": 5}
    assert telemetry.points("conveyor.stage.failures") == {"flaky": 5}
    assert telemetry.points("conveyor.stage.retries") == {"flaky": 4}
    assert telemetry.points("conveyor.call.duration") == {"flaky": 10}


async def test_a_failed_run_span_has_an_error_status(telemetry: Telemetry) -> None:
    @single_task
    def boom(x: int) -> int:
        raise KeyError(x)

    with pytest.raises(KeyError):
        await boom.with_instruments(telemetry.instrument())([1]).collect()
    [run] = telemetry.spans("conveyor.run")
    assert run.status.status_code is StatusCode.ERROR
    assert run.events[0].name == "exception"


async def test_sampled_call_spans_are_a_fraction_of_the_calls(telemetry: Telemetry) -> None:
    pipeline = double.with_instruments(telemetry.instrument(call_spans=0.25))
    await pipeline(range(400)).collect()
    assert 40 <= len(telemetry.spans("conveyor.call")) <= 160  # 100 expected


async def test_metrics_count_the_items_of_each_stage(telemetry: Telemetry) -> None:
    pipeline = (double | total).with_instruments(telemetry.instrument())
    await pipeline(range(10)).collect()
    assert telemetry.points("conveyor.stage.items") == {"double": 10, "total": 10}
    assert telemetry.points("conveyor.call.duration") == {"double": 10, "total": 4}


async def test_queue_depths_and_calls_in_flight_are_gauges_of_running_stages(
    telemetry: Telemetry,
) -> None:
    release = anyio.Event()
    waiting = 0

    @single_task(concurrency_limit=2)
    async def held(x: int) -> int:
        nonlocal waiting
        waiting += 1
        await release.wait()
        return x

    async with held.with_instruments(telemetry.instrument()).open(range(10)) as results:
        with anyio.fail_after(5):
            while waiting < 2:
                await anyio.sleep(0.001)
        # Collected from another thread, as a periodic exporter does.
        in_flight = await anyio.to_thread.run_sync(
            telemetry.points, "conveyor.stage.calls_in_flight"
        )
        queued = telemetry.points("conveyor.stage.queue_depth")
        release.set()
        assert len([x async for x in results]) == 10
    assert in_flight == {"held": 2}
    assert queued == {"held": 0}  # the stage took its input chunk: nothing waits


def test_call_spans_must_be_a_bool_or_a_fraction() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        OpenTelemetry(call_spans=2)
    with pytest.raises(TypeError, match="call_spans"):
        OpenTelemetry(call_spans="all")  # type: ignore[arg-type]


def test_a_missing_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "opentelemetry.trace", None)
    with pytest.raises(ImportError, match=r"pip install 'conveyor\[otel\]'"):
        OpenTelemetry()


async def test_call_durations_can_be_left_out_of_metrics(telemetry: Telemetry) -> None:
    pipeline = double.with_instruments(telemetry.instrument(call_durations=False))
    await pipeline(range(10)).collect()
    assert telemetry.points("conveyor.stage.items") == {"double": 10}
    assert telemetry.points("conveyor.call.duration") == {}


def test_call_durations_must_be_a_bool_or_a_fraction() -> None:
    with pytest.raises(ValueError, match="call_durations must be between 0 and 1"):
        OpenTelemetry(call_durations=-0.5)


async def test_a_generator_call_has_one_span_for_its_whole_life(
    telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    @single_task
    async def lines(n: int) -> Any:
        for i in range(3):
            with telemetry.tracer.start_as_current_span("line"):
                await anyio.lowlevel.checkpoint()
            yield n * 10 + i

    pipeline = lines.with_instruments(telemetry.instrument(call_spans=True))
    assert await pipeline([1, 2]).collect() == [10, 11, 12, 20, 21, 22]

    calls = telemetry.spans("conveyor.call")
    line_spans = telemetry.spans("line")
    assert len(calls) == 2
    assert len(line_spans) == 6
    assert {telemetry.parent_of(s).context.span_id for s in line_spans} == {  # type: ignore[union-attr]
        c.context.span_id for c in calls
    }
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

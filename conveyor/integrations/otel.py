"""OpenTelemetry traces and metrics of pipeline runs, built on conveyor's hooks.

``pipeline.with_instruments(OpenTelemetry())`` makes, for every run:

- a span ``conveyor.run``, the child of the span current where the run was
  started (``open()``, ``async for``, ``collect()``);
- optionally a span ``conveyor.call`` per call (every call, or a sampled
  fraction: ``call_spans=``), the child of the run span. It is the current
  span while the function runs, also when the task runs in a thread
  (``run_in_thread=True``: anyio copies the context into the thread), so
  spans the function makes are its children. Calls that travel to another
  process or cluster are traced on the caller's side, around the round
  trip; carrying the context into the worker is up to the function
  (``opentelemetry.propagate.inject`` / ``extract``), and optional;
- metrics: items, failures and retries per stage, a call-duration
  histogram, and queue depths and calls in flight per stage as gauges.

Only opentelemetry-api is needed (``pip install 'conveyor[otel]'``); with no
SDK configured every span and instrument is a no-op. The attribute and
metric names are listed in ``docs/observability.md`` and in :data:`ATTRIBUTES`.
"""

from __future__ import annotations

import contextvars
import random
import threading
import time
from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from ..instrumentation import CallInfo, Instrument, RunInfo
from ._optional import require

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["ATTRIBUTES", "METRICS", "OpenTelemetry"]

#: Span attributes conveyor sets: name -> meaning.
ATTRIBUTES = {
    "conveyor.run.id": "the run's id (its context's pipeline_id); run spans",
    "conveyor.run.stages": "the stage names in pipeline order; run spans",
    "conveyor.run.ordered": "whether results are released in input order; run spans",
    "conveyor.run.total": "input items, when the input has a length; run spans",
    "conveyor.run.items_read": "input items read, at the end; run spans",
    "conveyor.run.results_released": "results handed to the consumer, at the end; run spans",
    "conveyor.run.failures": "items or batches a skip policy dropped, at the end; run spans",
    "conveyor.run.outcome": (
        'how the run ended: "done", "stopped" (early, by the consumer: not an error), '
        '"failed" (span status ERROR) or "cancelled" (from outside); run spans'
    ),
    "conveyor.run.cancelled": "true on a call span whose call was cut short by the run's end",
    "conveyor.stage.name": "the task's name; call spans and every metric",
    "conveyor.stage.kind": '"single" or "batch"; call spans and every metric',
    "conveyor.stage.index": "the stage's position, from 0; call spans",
    "conveyor.call.attempt": "1 for a first try, 2 for the first retry...; call spans",
    "conveyor.call.size": "input values the call carries (a batch's length); call spans",
    "conveyor.call.paused": "seconds a generator's call waited for room downstream; call spans",
    "error.type": "the exception's class name; failed runs' and calls' spans, the failures metric",
}

#: Metrics conveyor records: name -> (instrument, unit, meaning).
METRICS = {
    "conveyor.stage.items": ("counter", "{item}", "input values of calls that returned"),
    "conveyor.stage.failures": ("counter", "{call}", "calls that raised (retried or not)"),
    "conveyor.stage.retries": ("counter", "{call}", "failed calls that were tried again"),
    "conveyor.call.duration": ("histogram", "s", "call durations, returned or raised"),
    "conveyor.stage.queue_depth": ("gauge", "{chunk}", "chunks waiting at a stage's input"),
    "conveyor.stage.calls_in_flight": ("gauge", "{call}", "calls suspended right now"),
}

_SCOPE = "conveyor"

#: Seconds after its start beyond which a call's span is back-dated to it.
LATE_START = 0.001


class OpenTelemetry(Instrument):
    """Trace and measure every run it is attached to.

    Args:
        call_spans (bool | float): a span per call: False (default) for none,
            True for every call, or the fraction of calls to trace (0 to 1,
            chosen at random per call).
        call_durations (bool | float): record call durations in the
            ``conveyor.call.duration`` histogram: True (default) for every
            call, False for none, or the fraction of calls to record (a
            random sample: the distribution stays right, the counts shrink).
            The SDK's histogram costs some 20 microseconds per recording, a
            lot next to a call of microseconds, little next to I/O. The
            counters and gauges cost next to nothing: they are observed
            when metrics are collected, from totals kept here.
        tracer_provider (TracerProvider | None): default: the global one.
        meter_provider (MeterProvider | None): default: the global one.

    Raises:
        ImportError: opentelemetry-api is missing (``pip install 'conveyor[otel]'``).
        TypeError / ValueError: ``call_spans`` is not a bool or a number in [0, 1].
    """

    def __init__(
        self,
        *,
        call_spans: bool | float = False,
        call_durations: bool | float = True,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        require("opentelemetry.trace", "otel")
        from opentelemetry import metrics, trace

        self.call_span_rate = _fraction("call_spans", call_spans)
        self.duration_rate = _fraction("call_durations", call_durations)
        self._random = random.Random()
        self._tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, meter_provider=meter_provider)
        # Counters are observed from these totals: {attributes key: count}. A
        # per-call add() on an SDK counter would cost microseconds per call.
        self._items: dict[tuple[str, ...], int] = {}
        self._failures: dict[tuple[str, ...], int] = {}
        self._retries: dict[tuple[str, ...], int] = {}
        for name, totals in (
            ("conveyor.stage.items", self._items),
            ("conveyor.stage.failures", self._failures),
            ("conveyor.stage.retries", self._retries),
        ):
            meter.create_observable_counter(
                name,
                callbacks=[partial(_observe_totals, totals)],
                unit=METRICS[name][1],
                description=METRICS[name][2],
            )
        self._durations = meter.create_histogram(
            "conveyor.call.duration", unit="s", description=METRICS["conveyor.call.duration"][2]
        )
        meter.create_observable_gauge(
            "conveyor.stage.queue_depth",
            callbacks=[self._queue_depths],
            unit="{chunk}",
            description=METRICS["conveyor.stage.queue_depth"][2],
        )
        meter.create_observable_gauge(
            "conveyor.stage.calls_in_flight",
            callbacks=[self._calls_in_flight],
            unit="{call}",
            description=METRICS["conveyor.stage.calls_in_flight"][2],
        )
        # The runs going on, for the gauges; a metric reader may call from a thread.
        self._lock = threading.Lock()
        self._runs: dict[str, RunInfo] = {}
        # {(stage name, kind): attributes}, so that each call does not build a dict
        self._stage_attributes: dict[tuple[str, str], dict[str, str]] = {}

    # -- runs -----------------------------------------------------------------

    def run_started(self, run: RunInfo) -> None:
        attributes: dict[str, Any] = {
            "conveyor.run.id": run.run_id,
            "conveyor.run.stages": list(run.stages),
            "conveyor.run.ordered": run.ordered,
        }
        if run.total is not None:
            attributes["conveyor.run.total"] = run.total
        # No context given: the caller's current span is the parent.
        run.state[self] = self._tracer.start_span("conveyor.run", attributes=attributes)
        with self._lock:
            self._runs[run.run_id] = run

    def run_finished(self, run: RunInfo) -> None:
        from opentelemetry.trace import Status, StatusCode

        with self._lock:
            self._runs.pop(run.run_id, None)
        span: Span = run.state.pop(self)
        statistics = run.statistics()
        span.set_attributes(
            {
                "conveyor.run.items_read": statistics.items_read,
                "conveyor.run.results_released": statistics.results_released,
                "conveyor.run.failures": statistics.failures,
            }
        )
        if run.outcome is not None:
            span.set_attribute("conveyor.run.outcome", run.outcome)
        error = run.error
        if run.outcome == "failed" and error is not None:
            # Only a failure is an error: a stop by the consumer (break,
            # first(), stop_reading()) is a normal end, and a cancellation
            # from outside is the caller's decision (its span says why).
            span.record_exception(error)
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end(end_time=None)

    # -- calls ----------------------------------------------------------------

    def _attributes(self, call: CallInfo) -> dict[str, str]:
        key = (call.stage, call.kind)
        attributes = self._stage_attributes.get(key)
        if attributes is None:
            attributes = self._stage_attributes[key] = {
                "conveyor.stage.name": call.stage,
                "conveyor.stage.kind": call.kind,
            }
        return attributes

    def _sampled(self, rate: float) -> bool:
        return rate >= 1.0 or (rate > 0.0 and self._random.random() < rate)

    def call_started(self, call: CallInfo) -> None:
        if not self._sampled(self.call_span_rate):
            return
        from opentelemetry import context, trace

        run_span: Span | None = call.run.state.get(self)
        parent = trace.set_span_in_context(run_span) if run_span is not None else None
        # A call sent to an executor in a round trip is announced when the
        # reply tells that it started: its span begins when it was sent.
        late = anyio.current_time() - call.started
        span = self._tracer.start_span(
            "conveyor.call",
            context=parent,
            attributes={
                **self._attributes(call),
                "conveyor.stage.index": call.stage_index,
                "conveyor.call.attempt": call.attempt,
                "conveyor.call.size": call.size,
            },
            start_time=time.time_ns() - int(late * 1e9) if late > LATE_START else None,
        )
        # Current while the function runs (in this task, or copied into its thread).
        token = context.attach(trace.set_span_in_context(span))
        call.state[self] = (span, token)

    def _end_span(self, call: CallInfo) -> Span | None:
        traced = call.state.pop(self, None)
        if traced is None:
            return None
        span, token = traced
        _detach(token)
        return span  # type: ignore[no-any-return]

    def call_finished(self, call: CallInfo) -> None:
        key = (call.stage, call.kind)
        items = self._items
        items[key] = items.get(key, 0) + call.size
        if self._sampled(self.duration_rate):
            self._durations.record(call.duration or 0.0, self._attributes(call))
        span = self._end_span(call)
        if span is not None:
            if call.paused:
                span.set_attribute("conveyor.call.paused", call.paused)
            span.end()

    def call_failed(self, call: CallInfo) -> None:
        span = self._end_span(call)
        error = call.error
        if call.cancelled or error is None:
            if span is not None:
                span.set_attribute("conveyor.run.cancelled", True)
                span.end()
            return
        key = (call.stage, call.kind, type(error).__name__)
        self._failures[key] = self._failures.get(key, 0) + 1
        if self._sampled(self.duration_rate):
            attributes = {**self._attributes(call), "error.type": type(error).__name__}
            self._durations.record(call.duration or 0.0, attributes)
        if span is not None:
            from opentelemetry.trace import Status, StatusCode

            span.set_attribute("error.type", type(error).__name__)
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            span.end()

    def call_retried(self, call: CallInfo) -> None:
        key = (call.stage, call.kind)
        self._retries[key] = self._retries.get(key, 0) + 1

    # -- gauges ---------------------------------------------------------------

    def _stage_values(self, field: str) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation

        with self._lock:
            runs = list(self._runs.values())
        totals: dict[tuple[str, str], int] = {}
        for run in runs:
            for stage in run.statistics().stages:
                key = (stage.name, stage.kind)
                totals[key] = totals.get(key, 0) + getattr(stage, field)
        for (name, kind), value in totals.items():
            yield Observation(value, {"conveyor.stage.name": name, "conveyor.stage.kind": kind})

    def _queue_depths(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._stage_values("input_buffered")

    def _calls_in_flight(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._stage_values("calls_waiting")


def _observe_totals(
    totals: dict[tuple[str, ...], int], options: CallbackOptions
) -> Iterable[Observation]:
    """The cumulative totals of an observable counter, by stage (and error type)."""
    from opentelemetry.metrics import Observation

    while True:
        try:  # a metric reader may call from its thread while the run adds a key
            snapshot = list(totals.items())
        except RuntimeError:  # pragma: no cover - a key was added meanwhile
            continue
        break
    for key, value in snapshot:
        attributes = {"conveyor.stage.name": key[0], "conveyor.stage.kind": key[1]}
        if len(key) > 2:
            attributes["error.type"] = key[2]
        yield Observation(value, attributes)


def _fraction(name: str, value: bool | float) -> float:
    """``value`` as a rate: True is 1, False is 0, a number must be in [0, 1]."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a bool or a fraction, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
    return float(value)


def _detach(token: object) -> None:
    """Make the call's span no longer current, where that still means something.

    Each call runs in a context of its own, so the span never outlives it. A
    generator's call may end in another context than it started in (where its
    values were drained): there the reset is not possible, and not needed.
    """
    if isinstance(token, contextvars.Token):
        try:
            token.var.reset(token)
        except (ValueError, RuntimeError):  # another context, or reset already
            pass
        return
    from opentelemetry import context  # a runtime context that is not contextvars'

    context.detach(token)  # type: ignore[arg-type]

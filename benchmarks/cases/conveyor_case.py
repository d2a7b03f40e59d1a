"""conveyor, through its public API, on asyncio, asyncio+uvloop and trio.

Stages are built with `single_task` / `single_task(concurrency_limit=...)` /
`batch_task(max_size=..., min_size=...)` and composed with `|`. How results
are taken depends on the variant (`--variant`):

  default   async for r in pipeline(data)    /  pipeline.as_completed(data)
  open      async with pipeline.open(data) as stream: async for r in stream
  collect   await pipeline(data).collect()   (throughput workloads only)

To benchmark a stage option (say the coming chunking of cheap async calls),
add a variant with `cheap_options`: they are passed to `single_task` for the
stages a workload marks `cheap` (async calls that never suspend).

    python benchmarks/cases/conveyor_case.py --workload overhead --backend trio --n 2000
"""

from __future__ import annotations

import os
from typing import Any

try:
    from . import workload as wl
except ImportError:  # run as a script
    import workload as wl  # type: ignore[no-redef]

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {"form": "iter"},
    "open": {"form": "open"},
    "collect": {"form": "collect"},
    # "chunked": {"form": "iter", "cheap_options": {"<option>": ...}},
    # Observability (benchmarks/observability.py): the same runs with instruments.
    "progress": {"form": "iter", "instruments": "progress"},
    "otel": {"form": "iter", "instruments": "otel"},
    "otel-spans": {"form": "iter", "instruments": "otel-spans"},
    "otel-counters": {"form": "iter", "instruments": "otel-counters"},
    "timing": {"form": "iter", "call_timing": True},
}


def _instruments(kind: str) -> list[Any]:
    """The instruments of an observability variant, as a user would attach them."""
    import io

    if kind == "progress":
        from rich.console import Console

        from conveyor.integrations.progress import Progress

        # A terminal (forced: the benchmark's output is a pipe), redrawn 4 times a second.
        console = Console(file=io.StringIO(), force_terminal=True, width=100)
        return [Progress(console=console)]
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from conveyor.integrations.otel import OpenTelemetry

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return [
        OpenTelemetry(
            call_spans=kind == "otel-spans",
            call_durations=kind != "otel-counters",
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )
    ]


def _module_from_dist(module: Any, dist_name: str) -> bool | None:
    """Whether `module` was imported from distribution `dist_name` (None: not installed)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        return None
    mine = os.path.realpath(module.__file__)
    return any(os.path.realpath(str(dist.locate_file(f))) == mine for f in dist.files or [])


class ConveyorAdapter:
    """Any library with conveyor's public API (conveyor and conveyor-streaming)."""

    name = "conveyor"
    module = "conveyor"
    backends: tuple[str, ...] = ("asyncio", "uvloop", "trio")
    features: tuple[str, ...] = ("batch_concurrency", "max_wait", "rate_limit")

    def __init__(self, variant: str = "default") -> None:
        import conveyor

        if variant not in VARIANTS:
            raise SystemExit(f"unknown variant {variant!r}; expected one of {list(VARIANTS)}")
        self.lib = conveyor
        self.variant = variant
        self.form: str = VARIANTS[variant]["form"]
        self.cheap_options: dict[str, Any] = VARIANTS[variant].get("cheap_options", {})
        self.instruments: str | None = VARIANTS[variant].get("instruments")
        self.call_timing: bool = VARIANTS[variant].get("call_timing", False)

    def unsupported(self, workload: str, mode: str, backend: str) -> str | None:
        if backend not in self.backends:
            return f"{self.name} runs on {'/'.join(self.backends)} only"
        if self.form == "collect" and workload in ("timeline", "memory"):
            return "collect() holds every result until the end"
        return None

    def check_library(self) -> str | None:
        if _module_from_dist(self.lib, "conveyor-streaming"):
            return (
                f"`import conveyor` found conveyor-streaming ({self.lib.__file__}), "
                "not the project: run with the project interpreter"
            )
        return None

    def _flow_options(self, st: wl.Stage) -> dict[str, Any]:
        """Flow-control options of a stage (batch4, trickle, rate workloads)."""
        options: dict[str, Any] = {}
        if st.kind == "batch" and st.concurrency is not None:
            options["concurrency_limit"] = st.concurrency
        if st.max_wait is not None:
            options["max_wait"] = st.max_wait
        if st.rate is not None:
            options["rate_limit"] = self.lib.RateLimit(st.rate, burst=st.burst)
        return options

    def build(self, plan: wl.Plan) -> Any:
        single_task, batch_task = self.lib.single_task, self.lib.batch_task
        tasks = []
        for st in plan.stages:
            flow = self._flow_options(st)  # only what the workload asks for
            if st.kind == "batch":
                tasks.append(batch_task(max_size=st.max_size, min_size=st.min_size, **flow)(st.fn))
                continue
            options: dict[str, Any] = flow
            if st.concurrency is not None:
                options["concurrency_limit"] = st.concurrency
            if st.cheap:
                options.update(self.cheap_options)
            tasks.append(single_task(**options)(st.fn) if options else single_task(st.fn))
        pipeline = tasks[0]
        for t in tasks[1:]:
            pipeline = pipeline | t
        if self.instruments:
            pipeline = pipeline.with_instruments(*_instruments(self.instruments))
        if self.call_timing:
            pipeline = pipeline.with_call_timing()
        return pipeline

    def open(self, pipeline: Any, source: Any, mode: str) -> Any:
        ordered = mode == "ordered"
        if self.form == "open":
            run = pipeline if ordered else pipeline.with_execution_mode("as_completed")
            return run.open(source)
        stream = pipeline(source) if ordered else pipeline.as_completed(source)
        if self.form == "collect":
            return _collected(stream)
        return wl.iterate(stream)


class _collected:
    """`await stream.collect()` inside the timed region, then replay the list."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    async def __aenter__(self) -> Any:
        return wl.aiter_list(await self.stream.collect())

    async def __aexit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    raise SystemExit(wl.main("conveyor", lambda args: ConveyorAdapter(args.variant)))

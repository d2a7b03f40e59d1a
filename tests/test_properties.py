"""Random pipelines, checked against the sequential model (``model.py``).

Hypothesis builds pipelines of 1-5 stages: single and batch tasks whose
functions are sync, async, generators or async generators; they pause (not at
all, a checkpoint, or a short virtual sleep chosen from the item), drop items
(``None``), expand them (lists of 0-3 values, generators), return one-item
tuples and strings, and fail on some items under a skip policy (with retries)
or under ``on_error="fail"``. Flow control is drawn too: several batch calls
at once, batches cut by ``max_wait`` (where the grouping cannot change the
output), and rate limits, of a stage's own or shared by several stages.
Every decision is derived from the item's value, so a function's result
never depends on timing; only the interleaving does.
Inputs are lists, sync generators and async generators (possibly pausing),
empty ones included, sometimes longer than the in-flight window.

Every example runs on asyncio or trio (one test id each) with virtual time,
so sleeps are instant and a deadlock shows up as a virtual timeout at once.

Hypothesis settings: the ``conveyor`` profile (the default) explores new
examples each run; ``conveyor-ci`` is derandomized (the same examples every
run); ``conveyor-thorough`` runs ten times as many. Pick one with the
``CONVEYOR_HYPOTHESIS_PROFILE`` environment variable.
"""

from __future__ import annotations

import functools
import logging
import operator
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor import BatchRemainderError, Pipeline, RateLimit, RateLimiter, batch_task, single_task
from conveyor.error_handling import Failure

from .model import FAILED, Stage, outputs_of, run_model
from .virtual_time import VirtualTimeEventLoop

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

# ---------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------

EXAMPLES = 150  # per test and backend; 7 tests x 2 backends
_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "print_blob": True,
}
settings.register_profile("conveyor", max_examples=EXAMPLES, **_COMMON)
settings.register_profile("conveyor-ci", max_examples=EXAMPLES, derandomize=True, **_COMMON)
settings.register_profile("conveyor-thorough", max_examples=10 * EXAMPLES, **_COMMON)
PROFILE = settings.get_profile(os.environ.get("CONVEYOR_HYPOTHESIS_PROFILE", "conveyor"))

BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])

#: Virtual seconds after which a run counts as deadlocked.
DEADLOCK = 3600.0

M = 1000  # values stay in range(M)
LEAK = -1  # what a failing generator yields before it raises: kept, and never made twice


class InjectedError(Exception):
    """The failure the generated functions raise."""


def norm(value: Any) -> int:
    """The number a value stands for (values may be ints, tuples or strings)."""
    if isinstance(value, tuple):
        return sum(value) % M
    return int(value)  # an int, or a str of one


def key_of(argument: Any) -> int:
    """The number a call's argument stands for (a batch: the sum of its values)."""
    if isinstance(argument, list):
        return sum(norm(value) for value in argument) % M
    return norm(argument)


def freeze(argument: Any) -> Any:
    """A hashable form of a call's argument (batches are lists)."""
    return tuple(argument) if isinstance(argument, list) else argument


# ---------------------------------------------------------------------------
# What hypothesis draws
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StagePlan:
    """One generated task. Residues of ``value % modulus`` pick what a call does."""

    batch: bool
    shell: str  # "sync" | "async" | "gen" | "agen"
    pause: str  # "none" | "checkpoint" | "sleep"
    delay: float  # the virtual sleep unit
    modulus: int
    fail_modulus: int  # failures have their own, larger modulus: they are rarer
    fail: int | None
    drop: int | None
    expand: int | None
    generate: int | None
    one_item: int | None
    mul: int
    add: int
    on_error: str
    attempts: int
    retry_delay: float
    concurrency_limit: int | None
    chunk_size: int | None
    min_size: int
    max_size: int
    aggregate: bool  # batch: one result for the whole batch, else one per value
    max_wait: float | None  # batch: only where the grouping cannot change the output
    rate_limit: RateLimit | str | None  # "shared": the run plan's one RateLimiter


@dataclass(frozen=True)
class SourcePlan:
    values: tuple[int, ...]
    kind: str  # "list" | "gen" | "agen"
    pause: float  # async generator: virtual sleep between items (0: none)


SHARED_RATE = RateLimit(500.0, burst=2)


@dataclass(frozen=True)
class RunPlan:
    stages: tuple[StagePlan, ...]
    source: SourcePlan
    max_parallelism: int | None
    shared_rate: RateLimit = SHARED_RATE  # for stages whose rate_limit is "shared"


@st.composite
def stage_plans(draw: st.DrawFn, *, policy: str, invariant: bool) -> StagePlan:
    """A stage; ``invariant``: its output multiset does not depend on batch grouping."""
    batch = draw(st.booleans())
    modulus = draw(st.integers(2, 7))
    residue = st.none() | st.integers(0, modulus - 1)
    rare = st.none() | st.none() | st.integers(0, modulus - 1)  # for drops
    fail_modulus = draw(st.integers(2, 40))
    min_size = 1 if invariant else draw(st.integers(1, 4))
    fail = draw(st.none() | st.integers(0, fail_modulus - 1))
    aggregate = False if invariant else draw(st.booleans())
    if batch and invariant:
        fail = None  # whether a batch fails depends on its other values
    # Batches cut by time group values differently from the model's batches
    # of max_size: only per-value batches with no failures and no leftovers
    # release the same values either way.
    groupable = batch and not aggregate and fail is None and min_size == 1
    max_wait = draw(st.none() | st.sampled_from([0.0, 0.001, 0.005])) if groupable else None
    rate_limit = draw(
        st.none()
        | st.none()
        | st.just("shared")
        | st.builds(RateLimit, st.sampled_from([200.0, 1000.0]), burst=st.integers(1, 3))
    )
    return StagePlan(
        batch=batch,
        shell=draw(st.sampled_from(["sync", "async", "gen", "agen"])),
        pause=draw(st.sampled_from(["none", "checkpoint", "sleep"])),
        delay=draw(st.sampled_from([0.001, 0.01])),
        modulus=modulus,
        fail_modulus=fail_modulus,
        fail=fail,
        drop=draw(rare),
        expand=draw(residue),
        generate=draw(residue),
        one_item=draw(residue),
        mul=draw(st.integers(1, 9)),
        add=draw(st.integers(0, 9)),
        on_error=policy if policy == "fail" else ("skip_batch" if batch else "skip_item"),
        attempts=draw(st.integers(1, 3)),
        retry_delay=draw(st.sampled_from([0.0, 0.001])),
        concurrency_limit=draw(st.none() | st.integers(1, 8)),
        chunk_size=draw(st.none() | st.integers(1, 5)),
        min_size=min_size,
        max_size=draw(st.integers(min_size + (max_wait is not None), 5)),  # max_wait needs room
        aggregate=aggregate,
        max_wait=max_wait,
        rate_limit=rate_limit,
    )


@st.composite
def source_plans(draw: st.DrawFn, *, paced: bool = False) -> SourcePlan:
    """An input; ``paced``: mostly an async generator that sleeps between items."""
    values = st.integers(0, M - 1)
    if draw(st.integers(0, 9)) == 0:  # now and then more than the in-flight window
        count = draw(st.integers(250, 600))
        seed = draw(st.integers(0, M - 1))
        items = tuple((seed + 37 * i) % M for i in range(count))
    else:
        items = tuple(draw(st.lists(values, max_size=30)))
    return SourcePlan(
        values=items,
        kind=draw(st.sampled_from(["agen", "agen", "list"] if paced else ["list", "gen", "agen"])),
        pause=draw(st.sampled_from([0.001] if paced else [0.0, 0.0, 0.001])),
    )


def run_plans(*, policy: str = "skip", invariant: bool = False) -> st.SearchStrategy[RunPlan]:
    return st.builds(
        RunPlan,
        stages=st.lists(
            stage_plans(policy=policy, invariant=invariant), min_size=1, max_size=5
        ).map(tuple),
        source=source_plans(paced=policy == "fail"),
        max_parallelism=st.none() | st.none() | st.integers(1, 6),
    )


# ---------------------------------------------------------------------------
# Building real tasks from a plan
# ---------------------------------------------------------------------------


class Recorder:
    """What the generated functions saw: calls, raised errors, calls in flight."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.started: dict[str, list[float]] = {}  # stage: when each call (attempt) started
        self.raised: list[InjectedError] = []
        self.active: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.total = 0
        self.total_peak = 0

    def enter(self, name: str, argument: Any) -> None:
        self.calls.append((name, freeze(argument)))

    def stamp(self, name: str) -> None:
        """A call (attempt) starts now: its function is called."""
        self.started.setdefault(name, []).append(anyio.current_time())
        self.active[name] += 1
        self.peak[name] = max(self.peak[name], self.active[name])
        self.total += 1
        self.total_peak = max(self.total_peak, self.total)

    def leave(self, name: str) -> None:
        self.active[name] -= 1
        self.total -= 1


def value_result(plan: StagePlan, number: int) -> Any:
    """What a call on ``number`` returns (or raises), by the plan's residues."""
    if number % plan.fail_modulus == plan.fail:
        raise InjectedError(number)
    residue = number % plan.modulus
    if residue == plan.drop:
        return None
    if residue == plan.expand:
        return [(number * plan.mul + i) % M for i in range((number // plan.modulus) % 4)]
    if residue == plan.generate:
        return ((number + i) % M for i in range(number % 3))
    if residue == plan.one_item:
        return (number, plan.add) if number % 2 else str(number)
    return (number * plan.mul + plan.add) % M


def pure_function(plan: StagePlan) -> Callable[[Any], Any]:
    """The stage's function as the model sees it: synchronous, no pauses."""
    if not plan.batch:
        return lambda value: value_result(plan, norm(value))
    if plan.aggregate:
        return lambda batch: value_result(plan, key_of(batch))

    def per_value(batch: list[Any]) -> list[Any]:
        if any(norm(v) % plan.fail_modulus == plan.fail for v in batch):
            raise InjectedError(batch)
        return [out for value in batch for out in outputs_of(value_result(plan, norm(value)))]

    return per_value


def pause_for(plan: StagePlan) -> Callable[[Any], Awaitable[None]]:
    async def no_pause(argument: Any) -> None:
        return None

    async def checkpoint(argument: Any) -> None:
        await anyio.lowlevel.checkpoint()

    async def sleep(argument: Any) -> None:
        await anyio.sleep(((key_of(argument) * 7 + plan.add) % 3) * plan.delay)

    return {"none": no_pause, "checkpoint": checkpoint, "sleep": sleep}[plan.pause]


def real_function(plan: StagePlan, name: str, recorder: Recorder) -> Callable[[Any], Any]:
    """The stage's function as conveyor runs it: ``plan.shell`` around the pure one."""
    pure = pure_function(plan)
    pause = pause_for(plan)

    def call(argument: Any) -> Any:
        try:
            return pure(argument)
        except InjectedError as error:
            recorder.raised.append(error)
            raise

    if plan.shell == "sync":

        def sync_function(argument: Any) -> Any:
            recorder.stamp(name)
            recorder.enter(name, argument)
            try:
                return call(argument)
            finally:
                recorder.leave(name)

        return sync_function

    if plan.shell == "async":

        async def async_function(argument: Any) -> Any:
            recorder.stamp(name)
            recorder.enter(name, argument)
            try:
                await pause(argument)
                return call(argument)
            finally:
                recorder.leave(name)

        return async_function

    if plan.shell == "gen":

        def generator_function(argument: Any) -> Iterator[Any]:
            recorder.enter(name, argument)
            try:
                try:
                    result = call(argument)
                except InjectedError:
                    yield LEAK  # made before the failure: passed on, so never retried
                    raise
                yield from outputs_of(result)
            finally:
                recorder.leave(name)

        def stamped_generator_function(argument: Any) -> Iterator[Any]:
            recorder.stamp(name)  # the body only runs once the stage iterates
            return generator_function(argument)

        return stamped_generator_function

    async def async_generator_function(argument: Any) -> AsyncIterator[Any]:
        recorder.enter(name, argument)
        try:
            await pause(argument)
            try:
                result = call(argument)
            except InjectedError:
                yield LEAK
                raise
            for value in outputs_of(result):
                yield value
                await pause(value)
        finally:
            recorder.leave(name)

    def stamped_async_generator_function(argument: Any) -> AsyncIterator[Any]:
        recorder.stamp(name)  # the body only runs once the stage iterates
        return async_generator_function(argument)

    return stamped_async_generator_function


@dataclass
class Built:
    pipeline: Pipeline[Any, Any]
    model: list[Stage]
    recorder: Recorder
    plan: RunPlan


def build(plan: RunPlan, mode: str = "ordered") -> Built:
    recorder = Recorder()
    tasks: list[Any] = []
    model: list[Stage] = []
    shared = RateLimiter(plan.shared_rate)
    for index, stage in enumerate(plan.stages):
        name = f"s{index}"
        function = real_function(stage, name, recorder)
        options: dict[str, Any] = {
            "on_error": stage.on_error,
            "retry_attempts": stage.attempts,
            "retry_delay": stage.retry_delay,
            "task_name": name,
            "rate_limit": shared if stage.rate_limit == "shared" else stage.rate_limit,
        }
        if stage.batch:
            task = batch_task(
                min_size=stage.min_size,
                max_size=stage.max_size,
                max_wait=stage.max_wait,
                concurrency_limit=stage.concurrency_limit,
                **options,
            )
        else:
            task = single_task(
                concurrency_limit=stage.concurrency_limit, chunk_size=stage.chunk_size, **options
            )
        tasks.append(task(function))
        model.append(
            Stage(
                name=name,
                func=pure_function(stage),
                batch=stage.batch,
                min_size=stage.min_size,
                max_size=stage.max_size,
                on_error=stage.on_error,
                attempts=stage.attempts,
                partial=(LEAK,) if stage.shell in ("gen", "agen") else (),
                by_time=stage.max_wait is not None,
            )
        )
    pipeline = functools.reduce(operator.or_, tasks).with_execution_mode(mode)
    if plan.max_parallelism is not None:
        pipeline = pipeline.with_context(max_parallelism=plan.max_parallelism)
    return Built(pipeline, model, recorder, plan)


def source_of(plan: SourcePlan) -> Any:
    values = list(plan.values)
    if plan.kind == "list":
        return values

    if plan.kind == "gen":
        return (value for value in values)

    async def produce() -> AsyncIterator[int]:
        for value in values:
            if plan.pause:
                await anyio.sleep(plan.pause * (value % 2))
            yield value

    return produce()


# ---------------------------------------------------------------------------
# Running one example
# ---------------------------------------------------------------------------


def run_virtual(backend: str, function: Callable[[], Awaitable[Any]]) -> Any:
    """``anyio.run`` with virtual time on ``backend``."""
    if backend == "asyncio":
        options: dict[str, Any] = {"loop_factory": VirtualTimeEventLoop}
    else:
        options = {"clock": trio.testing.MockClock(autojump_threshold=0)}
    return anyio.run(function, backend=backend, backend_options=options)


@dataclass
class Run:
    released: list[Any]
    failures: list[Failure] | None = None
    error: BaseException | None = None


async def consume(built: Built, style: str) -> Run:
    """Read the whole run the way a user would (``style``), keeping what came out."""
    pipeline, data = built.pipeline, source_of(built.plan.source)
    run = Run(released=[])
    try:
        with anyio.fail_after(DEADLOCK):
            if style == "collect":
                run.released = await pipeline(data).collect()
            elif style == "async for":
                async for value in pipeline(data):
                    run.released.append(value)
            else:
                async with pipeline.open(data) as results:
                    async for value in results:
                        run.released.append(value)
                run.failures = list(results.failures)
    except InjectedError as error:
        run.error = error
    except ExceptionGroup as group:
        run.error = group
    return run


def execute(backend: str, built: Built, style: str = "open") -> Run:
    run: Run = run_virtual(backend, lambda: consume(built, style))
    return run


def leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------

STYLES = st.sampled_from(["collect", "async for", "open"])


@BACKENDS
@PROFILE
@given(plan=run_plans(), style=STYLES)
def test_ordered_output_equals_the_model(backend: str, plan: RunPlan, style: str) -> None:
    built = build(plan)
    expected = run_model(built.model, list(plan.source.values))
    run = execute(backend, built, style)
    assert run.error is None
    assert run.released == expected.outputs


@BACKENDS
@PROFILE
@given(plan=run_plans(invariant=True), style=STYLES)
def test_as_completed_output_is_the_models_multiset(
    backend: str, plan: RunPlan, style: str
) -> None:
    # In as-completed mode a batch stage batches in arrival order, so only
    # pipelines whose outputs do not depend on batch composition qualify:
    # per-value batch functions, no batch failures, no unprocessed remainder.
    built = build(plan, mode="as_completed")
    expected = run_model(built.model, list(plan.source.values))
    run = execute(backend, built, style)
    assert run.error is None
    assert Counter(run.released) == Counter(expected.outputs)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@st.composite
def accounting_cases(draw: st.DrawFn) -> tuple[str, RunPlan]:
    mode = draw(st.sampled_from(["ordered", "as_completed"]))
    return mode, draw(run_plans(invariant=mode == "as_completed"))


def ledger(calls: list[tuple[str, Any]], regrouped: set[str]) -> Counter[Any]:
    """The calls of a run as a multiset; ``regrouped`` batch stages count values, not lists."""
    return Counter(
        (name, value)
        for name, argument in calls
        for value in (argument if name in regrouped else (freeze(argument),))
    )


@BACKENDS
@PROFILE
@given(case=accounting_cases())
def test_every_input_is_released_dropped_or_recorded_as_failure(
    backend: str, case: tuple[str, RunPlan]
) -> None:
    # The model accounts for every value at every stage: it is released,
    # dropped by the function (None), dropped by a skip policy (a failure
    # record), or left over in a too-small final batch (a logged warning).
    # The real run must agree on each of those, not only on what came out.
    mode, plan = case
    built = build(plan, mode)
    expected = run_model(built.model, list(plan.source.values))
    records = _Records()
    logger = logging.getLogger("conveyor")
    logger.addHandler(records)
    try:
        run = execute(backend, built, "open")
    finally:
        logger.removeHandler(records)
    assert run.error is None
    assert run.failures is not None
    assert Counter(run.released) == Counter(expected.outputs)
    # Batches cut by max_wait (or in arrival order) are compared value by value.
    regrouped = {
        f"s{index}"
        for index, stage in enumerate(plan.stages)
        if stage.batch and (mode == "as_completed" or stage.max_wait is not None)
    }
    assert ledger(built.recorder.calls, regrouped) == ledger(expected.calls, regrouped)
    skipped = [f for f in run.failures if not isinstance(f.exception, BatchRemainderError)]
    recorded = Counter((failure.task_name, freeze(failure.item)) for failure in skipped)
    assert recorded == Counter((name, freeze(argument)) for name, argument in expected.failures)
    raised = {id(error) for error in built.recorder.raised}
    model = {stage.name: stage for stage in built.model}
    for failure in skipped:
        assert isinstance(failure.exception, InjectedError)
        assert id(failure.exception) in raised
        stage = model[failure.task_name]
        # A generator that made a value before failing is never retried.
        assert failure.attempts == (1 if stage.partial else stage.attempts)
        assert failure.values_passed_on == len(stage.partial)
    dropped = Counter((record.args[0], record.args[1]) for record in records.records)  # type: ignore[index]
    assert dropped == Counter((name, len(rest)) for name, rest in expected.leftovers)
    # The same leftovers are readable by the program: failure records, never called.
    left = [f for f in run.failures if isinstance(f.exception, BatchRemainderError)]
    assert Counter((f.task_name, freeze(f.item)) for f in left) == Counter(
        (name, freeze(rest)) for name, rest in expected.leftovers
    )
    assert all(f.attempts == 0 and f.exception.values == f.item for f in left)


@BACKENDS
@PROFILE
@given(plan=run_plans())
def test_concurrency_limits_cap_calls_in_flight(backend: str, plan: RunPlan) -> None:
    built = build(plan)
    run = execute(backend, built, "collect")
    assert run.error is None
    peak = built.recorder.peak
    for index, stage in enumerate(plan.stages):
        limit = (stage.concurrency_limit or 1) if stage.batch else stage.concurrency_limit
        if limit is not None:
            assert peak[f"s{index}"] <= limit, f"stage s{index}"
    # max_parallelism counts a generator's call while it runs, not while it
    # waits for its values to be taken (docs/concurrency.md): a recorder that
    # counts generators from start to end sees more, by design.
    generators = any(stage.shell in ("gen", "agen") for stage in plan.stages)
    if plan.max_parallelism is not None and not generators:
        assert built.recorder.total_peak <= plan.max_parallelism


@BACKENDS
@PROFILE
@given(plan=run_plans())
def test_rate_limits_bound_calls_in_every_span_of_time(backend: str, plan: RunPlan) -> None:
    # Every attempt takes a token: over any span of T seconds a limit lets at
    # most rate * T + burst calls start, per stage or across the stages that
    # share one limiter.
    built = build(plan)
    run = execute(backend, built, "collect")
    assert run.error is None
    started = built.recorder.started
    shared: list[float] = []
    for index, stage in enumerate(plan.stages):
        times = started.get(f"s{index}", [])
        if isinstance(stage.rate_limit, RateLimit):
            assert_within_rate(times, stage.rate_limit)
        elif stage.rate_limit == "shared":
            shared += times
    assert_within_rate(shared, plan.shared_rate)


def assert_within_rate(times: list[float], limit: RateLimit) -> None:
    times = sorted(times)
    rate = limit.rate / limit.per
    for first in range(len(times)):
        for last in range(first + limit.burst, len(times)):
            calls = last - first + 1
            span = times[last] - times[first]
            assert calls <= rate * span + limit.burst + 1e-6, (calls, span, limit)


@BACKENDS
@PROFILE
@given(plan=run_plans(policy="fail"), style=STYLES)
def test_fail_policy_raises_one_of_the_original_exceptions(
    backend: str, plan: RunPlan, style: str
) -> None:
    built = build(plan)
    expected = run_model(built.model, list(plan.source.values))
    run = execute(backend, built, style)
    if FAILED not in expected.outputs:
        assert run.error is None
        return
    assert run.error is not None, "the run did not fail"
    raised = {id(error) for error in built.recorder.raised}
    if isinstance(run.error, BaseExceptionGroup):
        # Allowed only for independent failures that happened at once.
        assert len(leaves(run.error)) >= 2
    assert all(id(leaf) in raised for leaf in leaves(run.error))


@BACKENDS
@PROFILE
@given(plan=run_plans(policy="fail"), style=STYLES)
def test_fail_policy_releases_only_results_before_the_first_failure(
    backend: str, plan: RunPlan, style: str
) -> None:
    # Fail-policy inputs are mostly paced async generators, so that early
    # results get out before the failure stops the run.
    built = build(plan)
    expected = run_model(built.model, list(plan.source.values))
    run = execute(backend, built, style)
    outputs = expected.outputs
    before = outputs[: outputs.index(FAILED)] if FAILED in outputs else outputs
    assert run.released == before[: len(run.released)]


@BACKENDS
@PROFILE
@given(plan=run_plans())
def test_a_pipeline_object_gives_the_same_result_on_every_run(backend: str, plan: RunPlan) -> None:
    built = build(plan)
    expected = run_model(built.model, list(plan.source.values))

    async def twice_at_once() -> list[list[Any]]:
        results: list[list[Any]] = [[], []]

        async def one(slot: int) -> None:
            data = source_of(plan.source)
            results[slot] = await built.pipeline(data).collect()

        with anyio.fail_after(DEADLOCK):
            async with anyio.create_task_group() as tg:
                tg.start_soon(one, 0)
                tg.start_soon(one, 1)
        return results

    first, second = run_virtual(backend, twice_at_once)
    assert first == expected.outputs
    assert second == expected.outputs

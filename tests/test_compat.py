"""conveyor-streaming 1.2 compatibility.

Code written against conveyor-streaming's public names keeps working: its
README examples give the results the README promises, its import paths,
classes, decorator signatures (positional options included) and low-level
forms (``AsyncStream(source)``, ``await task.process(items)``,
``Pipeline().add(...)``, the context helpers, the error handlers) behave the
same. The last section pins the deliberate differences listed in
``docs/migrating.md``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import fields
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import conveyor
from conveyor import (
    AsyncStream,
    BatchTask,
    ContextManager,
    ErrorHandler,
    LoggingErrorHandler,
    Pipeline,
    PipelineContext,
    RetryConfig,
    SingleTask,
    batch_task,
    get_current_context,
    set_current_context,
    single_task,
    with_context,
)

from .conftest import virtual_clock


def stopwatch() -> Any:
    start = anyio.current_time()
    return lambda: round(anyio.current_time() - start, 6)


# ---------------------------------------------------------------------------
# Names and import paths (api.md section 1)
# ---------------------------------------------------------------------------

COMPAT_NAMES = [
    "single_task",
    "batch_task",
    "Pipeline",
    "BaseTask",
    "SingleTask",
    "BatchTask",
    "AsyncStream",
    "PipelineContext",
    "ExecutionMode",
    "get_current_context",
    "set_current_context",
    "ContextManager",
    "with_context",
    "ErrorAction",
    "RetryConfig",
    "ErrorHandler",
    "LoggingErrorHandler",
]

SUBMODULE_NAMES = [
    ("conveyor.stream", "AsyncStream"),
    ("conveyor.tasks", "BaseTask"),
    ("conveyor.tasks", "SingleTask"),
    ("conveyor.tasks", "BatchTask"),
    ("conveyor.pipeline", "Pipeline"),
    ("conveyor.context", "PipelineContext"),
    ("conveyor.context", "ExecutionMode"),
    ("conveyor.context", "get_current_context"),
    ("conveyor.context", "set_current_context"),
    ("conveyor.context", "ContextManager"),
    ("conveyor.context", "with_context"),
    ("conveyor.error_handling", "ErrorAction"),
    ("conveyor.error_handling", "RetryConfig"),
    ("conveyor.error_handling", "ErrorHandler"),
    ("conveyor.error_handling", "LoggingErrorHandler"),
    ("conveyor.decorators", "single_task"),
    ("conveyor.decorators", "batch_task"),
]


@pytest.mark.parametrize("name", COMPAT_NAMES)
def test_every_compatibility_name_is_exported_from_conveyor(name: str) -> None:
    assert name in conveyor.__all__
    assert getattr(conveyor, name) is not None


@pytest.mark.parametrize(("module", "name"), SUBMODULE_NAMES)
def test_every_old_submodule_import_path_still_works(module: str, name: str) -> None:
    imported = importlib.import_module(module)

    assert getattr(imported, name) is getattr(conveyor, name)
    assert name in imported.__all__


# ---------------------------------------------------------------------------
# README: quick start
# ---------------------------------------------------------------------------


@single_task
async def multiply_by_two(x: int) -> int:
    await anyio.sleep(0.01)
    return x * 2


@batch_task(max_size=3)
async def sum_batch(batch: list[int]) -> int:
    await anyio.sleep(0.05)
    return sum(batch)


@single_task
async def add_ten(x: int) -> int:
    await anyio.sleep(0.01)
    return x + 10


@batch_task(max_size=3, min_size=2)
async def sum_batch_min2(batch: list[int]) -> int:
    return sum(batch)


DATA_SOURCE = [1, 2, 3, 4, 5, 6, 7]


@pytest.mark.anyio
async def test_quick_start_streams_22_40_24() -> None:
    pipeline = multiply_by_two | sum_batch | add_ten

    streamed = [item async for item in pipeline(DATA_SOURCE)]

    assert streamed == [22, 40, 24]


@pytest.mark.anyio
async def test_quick_start_collect_gives_22_40_24() -> None:
    pipeline = multiply_by_two | sum_batch | add_ten

    assert await pipeline(DATA_SOURCE).collect() == [22, 40, 24]


@pytest.mark.anyio
async def test_quick_start_sums_the_doubled_values_in_batches_of_3() -> None:
    batches: list[list[int]] = []

    @batch_task(max_size=3)
    async def sum_batch_recorded(batch: list[int]) -> int:
        batches.append(list(batch))
        return sum(batch)

    await (multiply_by_two | sum_batch_recorded | add_ten)(DATA_SOURCE).collect()

    assert batches == [[2, 4, 6], [8, 10, 12], [14]]


@pytest.mark.anyio
async def test_quick_start_as_completed_gives_three_batch_sums_plus_ten() -> None:
    # Batches are formed in completion order, so which values share a batch
    # is not fixed; three batches of the 7 doubled values always are.
    pipeline = multiply_by_two | sum_batch | add_ten

    results = await pipeline.as_completed(DATA_SOURCE).collect()

    assert len(results) == 3
    assert sum(results) == 2 * sum(DATA_SOURCE) + 3 * 10


@pytest.mark.anyio
async def test_quick_start_with_min_size_2_drops_the_single_item_remainder(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pipeline = multiply_by_two | sum_batch_min2 | add_ten

    with caplog.at_level(logging.WARNING):
        results = await pipeline(DATA_SOURCE).collect()

    assert results == [22, 40]
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "sum_batch_min2" in message
    assert "1 item" in message
    assert "min_size=2" in message


@pytest.mark.anyio
async def test_quick_start_with_min_size_2_processes_a_two_item_remainder_silently(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pipeline = multiply_by_two | sum_batch_min2 | add_ten

    with caplog.at_level(logging.WARNING):
        results = await pipeline([1, 2, 3, 4, 5, 6, 7, 8]).collect()

    assert results == [22, 40, 40]
    assert caplog.records == []


# ---------------------------------------------------------------------------
# README: side inputs
# ---------------------------------------------------------------------------


@single_task
async def add_value(x: int, v: int) -> int:
    return x + v


@single_task
async def add_kw(x: int, *, v: int = 0, w: int = 0) -> int:
    return x + v + w


class Resolutions:
    def __init__(self, value: int) -> None:
        self.value = value
        self.count = 0

    async def get(self) -> int:
        self.count += 1
        return self.value


async def agen_vals() -> AsyncIterator[int]:
    yield 1000
    yield 2000


@pytest.mark.anyio
async def test_side_input_plain_value_is_passed_after_the_item() -> None:
    pipeline = multiply_by_two | add_value.with_inputs(5)

    assert await pipeline([1, 2, 3]).collect() == [7, 9, 11]


@pytest.mark.anyio
async def test_side_input_coroutine_is_awaited_once_and_its_result_passed() -> None:
    side = Resolutions(100)
    pipeline = multiply_by_two | add_value.with_inputs(side.get())

    assert await pipeline([1, 2, 3]).collect() == [102, 104, 106]
    assert side.count == 1


@pytest.mark.anyio
async def test_side_input_async_stream_passes_its_first_item() -> None:
    pipeline = multiply_by_two | add_value.with_inputs(AsyncStream(agen_vals()))

    assert await pipeline([1, 2, 3]).collect() == [1002, 1004, 1006]


@pytest.mark.anyio
async def test_side_input_from_another_pipelines_output_passes_its_first_item() -> None:
    side = multiply_by_two([21, 50])  # its first item is 42
    pipeline = multiply_by_two | add_value.with_inputs(side)

    assert await pipeline([1, 2, 3]).collect() == [44, 46, 48]


@pytest.mark.anyio
async def test_side_input_keywords_mix_values_and_coroutines() -> None:
    pipeline = multiply_by_two | add_kw.with_inputs(v=1, w=Resolutions(100).get())

    assert await pipeline([1, 2, 3]).collect() == [103, 105, 107]


@pytest.mark.anyio
async def test_pipeline_call_arguments_are_side_inputs_of_the_first_stage() -> None:
    assert await (add_value | multiply_by_two)([1, 2, 3], 7).collect() == [16, 18, 20]
    assert await (add_kw | multiply_by_two)([1, 2, 3], v=7).collect() == [16, 18, 20]
    assert await Pipeline().add(add_value)([1, 2], 3).collect() == [4, 5]


@single_task(concurrency_limit=1)
async def wait_for_other_source(x: int, other_stream: AsyncIterator[int]) -> int:
    other_value = await anext(other_stream)
    return x + other_value


async def generate_secondary_data() -> AsyncIterator[int]:
    for i in range(10, 40, 10):
        yield i
        await anyio.sleep(0.02)


@single_task
async def multiply_by_two_staggered(x: int) -> int:
    await anyio.sleep(x / 100)  # 1 is ready first, then 2, then 3
    return x * 2


@virtual_clock
async def test_side_input_raw_async_generator_is_passed_as_is_for_the_task_to_read() -> None:
    # The README's intended [24, 48, 72]: one call at a time (concurrency_limit=1),
    # since calls running at once cannot share one async generator.
    secondary_stream = generate_secondary_data()
    pipeline = (
        multiply_by_two_staggered
        | wait_for_other_source.with_inputs(secondary_stream)
        | multiply_by_two
    )

    try:
        assert await pipeline([1, 2, 3]).collect() == [24, 48, 72]
    finally:
        await secondary_stream.aclose()


# ---------------------------------------------------------------------------
# README: filtering, several batch stages
# ---------------------------------------------------------------------------


@single_task
async def initial_processor(x: int) -> int:
    await anyio.sleep(0.01)
    return x * 10


@single_task
async def filter_multiples_of_three(x: int) -> int | None:
    await anyio.sleep(0.01)
    return x if x % 3 == 0 else None


@batch_task(max_size=2)
async def batch_adder(batch: list[int]) -> int:
    await anyio.sleep(0.02)
    return sum(batch)


@single_task
async def final_touch(x: int) -> str:
    await anyio.sleep(0.01)
    return f"Result: {x}"


@pytest.mark.anyio
async def test_filtering_by_returning_none_gives_result_90() -> None:
    pipeline = initial_processor | filter_multiples_of_three | batch_adder | final_touch

    assert await pipeline([1, 2, 3, 4, 5, 6]).collect() == ["Result: 90"]


@batch_task(max_size=3, min_size=1)
async def initial_batch_summarizer(batch: list[int]) -> tuple[int, int]:
    await anyio.sleep(0.02)
    return (sum(batch), len(batch))


@single_task
async def process_summary(summary: tuple[int, int]) -> float:
    total, count = summary
    return total / count if count > 0 else 0


@batch_task(max_size=2, min_size=1)
async def final_batch_aggregator(averages: list[float]) -> float:
    await anyio.sleep(0.02)
    return sum(averages)


@pytest.mark.anyio
async def test_two_batch_stages_in_a_row_give_7_0_and_7_0() -> None:
    # [1,2,3] -> (6, 3) -> 2.0; [4,5,6] -> (15, 3) -> 5.0; [7] -> (7, 1) -> 7.0;
    # then [2.0, 5.0] -> 7.0 and [7.0] -> 7.0. The (sum, count) tuple is one item.
    pipeline = initial_batch_summarizer | process_summary | final_batch_aggregator

    assert await pipeline([1, 2, 3, 4, 5, 6, 7]).collect() == [7.0, 7.0]


# ---------------------------------------------------------------------------
# Zero-input sources
# ---------------------------------------------------------------------------


@single_task
async def bursty_source() -> AsyncIterator[dict[str, Any]]:
    for burst in range(3):
        await anyio.sleep(0.3)
        for i in range(5):
            yield {"id": burst * 10 + i}


@batch_task(max_size=3, min_size=1)
async def process_batch(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids = [item["id"] for item in items]
    await anyio.sleep(0.1)
    for item in items:
        item["with"] = ids
    return items


@single_task
async def finish(item: dict[str, Any]) -> tuple[int, list[int]]:
    return (item["id"], item["with"])


BURST_BATCHES = [[0, 1, 2], [3, 4, 10], [11, 12, 13], [14, 20, 21], [22, 23, 24]]


@virtual_clock
async def test_zero_input_async_generator_source_feeds_a_batch_stage() -> None:
    pipeline = bursty_source | process_batch | finish

    results = [result async for result in pipeline()]

    assert results == [(n, batch) for batch in BURST_BATCHES for n in batch]


@virtual_clock
async def test_zero_input_source_results_stream_after_each_batch() -> None:
    pipeline = bursty_source | process_batch | finish
    elapsed = stopwatch()

    released = [(result[0], elapsed()) async for result in pipeline()]

    # bursts at 0.3, 0.6, 0.9 s; one 0.1 s batch call at a time
    times = [0.4, 0.7, 0.8, 1.0, 1.1]
    assert released == [
        (n, at) for batch, at in zip(BURST_BATCHES, times, strict=True) for n in batch
    ]


@single_task
async def zero_src() -> AsyncIterator[int]:
    for i in range(5):
        yield i


@batch_task(max_size=2)
async def bsum(batch: list[int]) -> int:
    return sum(batch)


@pytest.mark.anyio
async def test_zero_input_source_alone_streams_what_it_yields() -> None:
    assert await Pipeline().add(zero_src)().collect() == [0, 1, 2, 3, 4]


@pytest.mark.anyio
async def test_zero_input_source_into_batches_of_two() -> None:
    assert await (zero_src | bsum)().collect() == [1, 5, 4]


@pytest.mark.anyio
async def test_zero_input_source_returning_a_list_streams_its_elements() -> None:
    @single_task
    async def list_src() -> list[int]:
        return [1, 2, 3]

    assert await Pipeline().add(list_src)().collect() == [1, 2, 3]


# ---------------------------------------------------------------------------
# Methods decorated as tasks
# ---------------------------------------------------------------------------


class Counter:
    def __init__(self, name: str, offset: int) -> None:
        self.name = name
        self.offset = offset
        self.seen: list[int] = []
        self.batches = 0
        self.scaled = 0

    @single_task
    async def add_offset(self, x: int) -> int:
        self.seen.append(x)
        return x + self.offset

    @single_task
    def sync_method(self, x: int) -> str:
        return f"{self.name}:{x}"

    @single_task
    async def gen_method(self, x: int) -> AsyncIterator[int]:
        yield x
        yield -x

    @batch_task(max_size=2)
    async def batch_method(self, batch: list[int]) -> int:
        self.batches += 1
        return sum(batch) * self.offset

    @single_task
    async def scale(self, x: int, k: int) -> int:
        self.scaled += 1
        return x * k


@pytest.mark.anyio
async def test_methods_of_two_instances_keep_their_own_state_in_one_pipeline() -> None:
    a = Counter("a", 100)
    b = Counter("b", 1000)
    pipeline = a.add_offset | a.batch_method | b.add_offset

    assert await pipeline([1, 2, 3]).collect() == [21300, 11300]
    assert (a.seen, a.batches) == ([1, 2, 3], 2)
    assert sorted(b.seen) == [10300, 20300]
    assert b.batches == 0


@pytest.mark.anyio
async def test_sync_method_task_uses_its_instance() -> None:
    a = Counter("a", 100)

    assert await a.sync_method([1, 2]).collect() == ["a:1", "a:2"]


@pytest.mark.anyio
async def test_async_generator_method_task_yields_every_value() -> None:
    a = Counter("a", 100)

    assert await a.gen_method([1, 2]).collect() == [1, -1, 2, -2]


@pytest.mark.anyio
async def test_batch_method_task_uses_its_instance() -> None:
    b = Counter("b", 1000)

    assert await b.batch_method([1, 2, 3]).collect() == [3000, 3000]
    assert b.batches == 2


@pytest.mark.anyio
async def test_method_with_inputs_keeps_the_instance() -> None:
    a = Counter("a", 100)

    assert await a.scale.with_inputs(3)([1, 2]).collect() == [3, 6]
    assert a.scaled == 2


@pytest.mark.anyio
async def test_method_given_side_inputs_by_the_call_keeps_the_instance() -> None:
    a = Counter("a", 100)

    assert await Pipeline().add(a.scale)([1, 2], 3).collect() == [3, 6]
    assert a.scaled == 2


# ---------------------------------------------------------------------------
# Low-level forms: task classes, decorator signatures, AsyncStream, process()
# ---------------------------------------------------------------------------


def triple(x: int) -> int:
    return x * 3


def total(batch: list[int]) -> int:
    return sum(batch)


triple_task = SingleTask(triple)


@pytest.mark.anyio
async def test_single_task_constructed_directly_runs_its_function() -> None:
    task = SingleTask(triple, concurrency_limit=2, task_name="triple3")

    assert (task.task_name, task.concurrency_limit) == ("triple3", 2)
    assert await task([1, 2, 3]).collect() == [3, 6, 9]


@pytest.mark.anyio
async def test_batch_task_constructed_directly_defaults_max_size_to_min_size() -> None:
    task = BatchTask(total, 2)

    assert (task.min_size, task.max_size) == (2, 2)
    assert await task([1, 2, 3, 4, 5, 6]).collect() == [3, 7, 11]


@pytest.mark.anyio
async def test_batch_task_constructed_directly_with_min_and_max_size() -> None:
    task = BatchTask(total, min_size=1, max_size=None)

    assert (task.min_size, task.max_size) == (1, 1)
    assert await BatchTask(total, min_size=1, max_size=3)([1, 2, 3, 4]).collect() == [6, 4]


class Replace(ErrorHandler):
    def __init__(self, value: Any) -> None:
        self.value = value

    async def handle_error(
        self, error: Exception, item: Any, task_name: str, attempt: int
    ) -> tuple[bool, Any]:
        return True, self.value


def test_single_task_options_in_the_old_positional_order() -> None:
    handler = Replace(0)

    task = single_task(None, "skip_item", 3, 0.5, False, 10.0, handler, "named", 4)(triple)

    assert isinstance(task, SingleTask)
    assert task.on_error == "skip_item"
    assert task.retry_config.max_attempts == 3
    assert task.retry_config.base_delay == 0.5
    assert task.retry_config.exponential_backoff is False
    assert task.retry_config.max_delay == 10.0
    assert task.error_handler is handler
    assert task.task_name == "named"
    assert task.concurrency_limit == 4


def test_batch_task_options_in_the_old_positional_order() -> None:
    handler = Replace(0)

    task = batch_task(2, 3, "skip_batch", 2, 0.25, True, 5.0, handler, "batched")(total)

    assert isinstance(task, BatchTask)
    assert (task.min_size, task.max_size) == (2, 3)
    assert task.on_error == "skip_batch"
    assert task.retry_config.max_attempts == 2
    assert task.retry_config.base_delay == 0.25
    assert task.retry_config.exponential_backoff is True
    assert task.retry_config.max_delay == 5.0
    assert task.error_handler is handler
    assert task.task_name == "batched"


def test_decorated_task_is_named_after_its_function() -> None:
    assert single_task(triple).task_name == "triple"
    assert batch_task(max_size=2)(total).task_name == "total"


@pytest.mark.anyio
async def test_positional_skip_item_option_drops_the_failing_item() -> None:
    def reciprocal(x: int) -> float:
        return 1 / x

    task = single_task(None, "skip_item")(reciprocal)

    assert await task([1, 0, 4]).collect() == [1.0, 0.25]


async def count_up(n: int) -> AsyncIterator[int]:
    for i in range(n):
        await anyio.lowlevel.checkpoint()
        yield i


@pytest.mark.anyio
async def test_async_stream_wraps_an_async_iterable() -> None:
    stream = AsyncStream(count_up(4))

    assert [item async for item in stream] == [0, 1, 2, 3]


@pytest.mark.anyio
async def test_async_stream_collect_returns_a_list() -> None:
    assert await AsyncStream(count_up(3)).collect() == [0, 1, 2]


@pytest.mark.anyio
async def test_awaiting_task_process_returns_an_async_iterable_of_outputs() -> None:
    double = SingleTask(lambda x: x * 2)

    outputs = await double.process(count_up(3))

    assert [item async for item in outputs] == [0, 2, 4]


@pytest.mark.anyio
async def test_batch_task_process_returns_the_batch_outputs() -> None:
    outputs = await BatchTask(total, max_size=2).process(count_up(5))

    assert [item async for item in outputs] == [1, 5, 4]


@pytest.mark.anyio
async def test_process_calls_chain_like_stages() -> None:
    double = SingleTask(lambda x: x * 2)
    plus_one = SingleTask(lambda x: x + 1)

    doubled = await double.process(count_up(3))
    outputs = await plus_one.process(doubled)

    assert [item async for item in outputs] == [1, 3, 5]


@pytest.mark.anyio
async def test_pipeline_add_appends_stages_and_returns_the_pipeline() -> None:
    double = SingleTask(lambda x: x * 2)
    plus_one = SingleTask(lambda x: x + 1)
    pipeline = Pipeline()

    returned = pipeline.add(double, plus_one)

    assert returned is pipeline
    assert pipeline.stages == [double, plus_one]
    assert await pipeline([1, 2]).collect() == [3, 5]


@pytest.mark.anyio
async def test_pipeline_add_calls_chain() -> None:
    double = SingleTask(lambda x: x * 2)
    plus_one = SingleTask(lambda x: x + 1)

    pipeline = Pipeline().add(double).add(plus_one).add(double)

    assert await pipeline([1, 2]).collect() == [6, 10]


@pytest.mark.anyio
async def test_pipeline_built_with_a_context_runs_in_that_mode() -> None:
    pipeline = Pipeline(PipelineContext(execution_mode="as_completed")).add(triple_task)

    assert pipeline.context.execution_mode == "as_completed"
    assert await pipeline([1, 2]).collect() == [3, 6]


@pytest.mark.anyio
async def test_tasks_and_pipelines_compose_in_every_combination() -> None:
    double = SingleTask(lambda x: x * 2)
    plus_one = SingleTask(lambda x: x + 1)

    assert await (double | plus_one)([1]).collect() == [3]
    assert await (double | (plus_one | double))([1]).collect() == [6]
    assert await ((double | plus_one) | double)([1]).collect() == [6]
    assert await ((double | plus_one) | (double | plus_one))([1]).collect() == [7]


# ---------------------------------------------------------------------------
# Context
# ---------------------------------------------------------------------------


def test_get_current_context_outside_a_run_is_none() -> None:
    assert get_current_context() is None


def test_context_manager_makes_a_context_current_and_restores_the_previous_one() -> None:
    outer = PipelineContext(pipeline_id="outer")
    inner = PipelineContext(pipeline_id="inner")

    with ContextManager(outer) as entered:
        assert entered is outer
        with ContextManager(inner):
            assert get_current_context() is inner
        assert get_current_context() is outer
    assert get_current_context() is None


@pytest.mark.anyio
async def test_with_context_awaits_a_coroutine_with_the_context_current() -> None:
    context = PipelineContext(pipeline_id="p1", data={"k": "v"})

    async def peek() -> PipelineContext | None:
        return get_current_context()

    assert await with_context(context, peek()) is context
    assert get_current_context() is None


@pytest.mark.anyio
async def test_set_current_context_makes_it_current() -> None:
    context = PipelineContext(pipeline_id="set")

    set_current_context(context)
    try:
        assert get_current_context() is context
    finally:
        set_current_context(None)
    assert get_current_context() is None


def test_pipeline_context_fields_and_defaults() -> None:
    context = PipelineContext()

    assert [f.name for f in fields(PipelineContext)] == [
        "execution_mode",
        "max_parallelism",
        "pipeline_id",
        "data",
    ]
    assert context.__dict__ == {
        "execution_mode": "ordered",
        "max_parallelism": None,
        "pipeline_id": None,
        "data": {},
    }


@single_task
def context_snapshot(item: str) -> tuple[str, int | None, dict[str, Any], bool]:
    context = get_current_context()
    assert context is not None
    return (
        context.execution_mode,
        context.max_parallelism,
        dict(context.data),
        bool(context.pipeline_id),
    )


@pytest.mark.anyio
async def test_tasks_see_the_run_context_with_a_pipeline_id() -> None:
    pipeline = Pipeline().add(context_snapshot)

    assert await pipeline(["x"]).collect() == [("ordered", None, {}, True)]


@pytest.mark.anyio
async def test_with_context_sets_known_fields_and_puts_other_keys_in_data() -> None:
    pipeline = Pipeline().add(context_snapshot).with_context(max_parallelism=4, foo="bar")

    assert await pipeline(["x"]).collect() == [("ordered", 4, {"foo": "bar"}, True)]


@pytest.mark.anyio
async def test_with_execution_mode_keeps_the_other_context_settings() -> None:
    pipeline = (
        Pipeline()
        .add(context_snapshot)
        .with_context(max_parallelism=4, foo="bar")
        .with_execution_mode("as_completed")
    )

    assert await pipeline(["x"]).collect() == [("as_completed", 4, {"foo": "bar"}, True)]


@single_task
def count_in_context(item: str) -> tuple[str, int, str]:
    context = get_current_context()
    assert context is not None
    context.data["n"] = context.data.get("n", 0) + 1
    return item, context.data["n"], context.data["batch_id"]


@pytest.mark.anyio
async def test_context_data_is_shared_within_a_run_and_fresh_for_the_next() -> None:
    template = PipelineContext(execution_mode="ordered", data={"batch_id": "b1"})
    pipeline = Pipeline().add(count_in_context).with_context(**template.__dict__)

    first = await pipeline(["a", "b", "c"]).collect()
    second = await pipeline(["d"]).collect()

    assert sorted(n for _, n, _ in first) == [1, 2, 3]
    assert [(item, batch) for item, _, batch in first] == [("a", "b1"), ("b", "b1"), ("c", "b1")]
    assert second == [("d", 1, "b1")]
    assert pipeline.context.data == {"batch_id": "b1"}


# ---------------------------------------------------------------------------
# Error handling
# ---------------------------------------------------------------------------


def test_retry_config_fields_and_defaults() -> None:
    config = RetryConfig()

    assert [f.name for f in fields(RetryConfig)][:5] == [
        "max_attempts",
        "base_delay",
        "exponential_backoff",
        "max_delay",
        "backoff_multiplier",
    ]
    assert (
        config.max_attempts,
        config.base_delay,
        config.exponential_backoff,
        config.max_delay,
        config.backoff_multiplier,
    ) == (3, 1.0, True, 60.0, 2.0)


def test_retry_config_takes_its_fields_positionally() -> None:
    config = RetryConfig(5, 0.5, False, 30.0, 3.0)

    assert (
        config.max_attempts,
        config.base_delay,
        config.exponential_backoff,
        config.max_delay,
        config.backoff_multiplier,
    ) == (5, 0.5, False, 30.0, 3.0)


def test_task_without_retries_has_a_single_attempt_retry_config() -> None:
    assert single_task(triple).retry_config.max_attempts == 1


@virtual_clock
async def test_retries_wait_base_delay_doubling_after_each_failed_attempt() -> None:
    attempts: list[float] = []
    elapsed = stopwatch()

    def always_fails(x: int) -> int:
        attempts.append(elapsed())
        raise ValueError(x)

    task = single_task(None, "skip_item", 4, 0.05)(always_fails)

    assert await task([1]).collect() == []
    assert attempts == [0.0, 0.05, 0.15, 0.35]


@virtual_clock
async def test_retries_without_backoff_wait_the_same_delay() -> None:
    attempts: list[float] = []
    elapsed = stopwatch()

    def always_fails(x: int) -> int:
        attempts.append(elapsed())
        raise ValueError(x)

    task = single_task(None, "skip_item", 3, 0.05, False)(always_fails)

    assert await task([1]).collect() == []
    assert attempts == [0.0, 0.05, 0.1]


def bad_two(x: int) -> int:
    if x == 2:
        raise ValueError("bad two")
    return x


@pytest.mark.anyio
async def test_logging_error_handler_logs_the_failure_and_continues_with_the_replacement(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = LoggingErrorHandler(replacement_value="REPL")
    task = single_task(error_handler=handler, task_name="logged")(bad_two)

    with caplog.at_level(logging.ERROR):
        results = await task([1, 2, 3]).collect()

    assert results == [1, "REPL", 3]
    [record] = caplog.records
    assert (record.name, record.levelno) == ("conveyor.error_handling", logging.ERROR)
    # conveyor-streaming's message, then where it happened (see test_observability)
    assert record.getMessage().startswith("Error in logged (attempt 1): bad two [conveyor run ")


@pytest.mark.anyio
async def test_logging_error_handler_default_replacement_none_drops_the_item(
    caplog: pytest.LogCaptureFixture,
) -> None:
    task = single_task(error_handler=LoggingErrorHandler())(bad_two)

    with caplog.at_level(logging.ERROR):
        assert await task([1, 2, 3]).collect() == [1, 3]
    assert len(caplog.records) == 1


@pytest.mark.anyio
async def test_logging_error_handler_logs_to_the_given_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("my.app.pipeline")
    task = single_task(error_handler=LoggingErrorHandler(logger=logger), task_name="mine")(bad_two)

    with caplog.at_level(logging.ERROR):
        await task([2]).collect()

    [record] = caplog.records
    assert record.name == "my.app.pipeline"
    assert record.getMessage().startswith("Error in mine (attempt 1): bad two [conveyor run ")


class Recording(ErrorHandler):
    def __init__(self, go_on: bool, value: Any = None) -> None:
        self.go_on = go_on
        self.value = value
        self.calls: list[tuple[Any, Any, str, int]] = []

    async def handle_error(
        self, error: Exception, item: Any, task_name: str, attempt: int
    ) -> tuple[bool, Any]:
        self.calls.append((error, item, task_name, attempt))
        return self.go_on, self.value


@pytest.mark.anyio
async def test_error_handler_returning_true_replaces_the_result() -> None:
    handler = Recording(True, -2)
    task = single_task(error_handler=handler, retry_attempts=2, retry_delay=0)(bad_two)

    assert await task([1, 2, 3]).collect() == [1, -2, 3]
    [(error, item, task_name, attempt)] = handler.calls
    assert (repr(error), item, task_name, attempt) == ("ValueError('bad two')", 2, "bad_two", 2)


@pytest.mark.anyio
async def test_error_handler_returning_false_fails_the_run_with_the_original_exception() -> None:
    handler = Recording(False, "ignored")
    task = single_task(error_handler=handler)(bad_two)

    with pytest.raises(ValueError, match="bad two"):
        await task([1, 2, 3]).collect()
    assert len(handler.calls) == 1


@pytest.mark.anyio
async def test_error_handler_takes_precedence_over_on_error() -> None:
    task = single_task(on_error="fail", error_handler=Replace("REPL"))(bad_two)

    assert await task([1, 2, 3]).collect() == [1, "REPL", 3]


# ---------------------------------------------------------------------------
# Deliberate differences (docs/migrating.md)
# ---------------------------------------------------------------------------


@single_task
def double(x: int) -> int:
    return x * 2


@single_task
def ident(x: Any) -> Any:
    return x


async def agen(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


@pytest.mark.anyio
async def test_diff_async_generator_input_is_iterated_as_data() -> None:
    assert await double(agen(3)).collect() == [0, 2, 4]


@pytest.mark.anyio
async def test_diff_async_stream_input_is_iterated_as_data() -> None:
    inc = SingleTask(lambda x: x + 1)

    assert await double(inc([1, 2, 3])).collect() == [4, 6, 8]


@pytest.mark.anyio
@pytest.mark.parametrize("value", [(1, 2), "ab", b"ab", {"a": 1}, 5])
async def test_diff_tuple_str_bytes_dict_and_scalar_inputs_are_one_item(value: Any) -> None:
    assert await ident(value).collect() == [value]


@pytest.mark.anyio
async def test_diff_range_input_is_iterated() -> None:
    assert await bsum(range(5)).collect() == [1, 5, 4]


@pytest.mark.anyio
async def test_diff_set_input_is_iterated() -> None:
    assert sorted(await ident({1, 2}).collect()) == [1, 2]


@pytest.mark.anyio
async def test_diff_generator_input_is_iterated() -> None:
    def numbers() -> Iterator[int]:
        yield from range(3)

    assert await double(numbers()).collect() == [0, 2, 4]


@pytest.mark.anyio
async def test_diff_batch_result_tuple_and_dict_are_one_item_each() -> None:
    @batch_task(max_size=2)
    def describe(batch: list[int]) -> Any:
        return tuple(batch) if batch[0] == 1 else {"n": len(batch)}

    assert await describe([1, 2, 3, 4]).collect() == [(1, 2), {"n": 2}]


@pytest.mark.anyio
async def test_diff_batch_result_list_is_flattened() -> None:
    @batch_task(max_size=2)
    def pairs(batch: list[int]) -> list[int]:
        return [x * 10 for x in batch]

    assert await pairs([1, 2, 3]).collect() == [10, 20, 30]


def boom(x: int) -> int:
    if x == 2:
        raise ValueError("boom 2")
    return x


@pytest.mark.anyio
async def test_diff_failing_middle_stage_fails_the_run_with_the_original_exception() -> None:
    pipeline = single_task(boom) | ident

    with pytest.raises(ValueError, match="boom 2"):
        await pipeline([1, 2, 3]).collect()


@pytest.mark.anyio
async def test_diff_as_completed_raises_instead_of_dropping_a_failed_item() -> None:
    with pytest.raises(ValueError, match="boom 2"):
        await single_task(boom).as_completed([1, 2, 3, 4, 5]).collect()


@pytest.mark.anyio
async def test_diff_errors_inside_a_generator_task_follow_on_error() -> None:
    @single_task(on_error="skip_item")
    async def expand(x: int) -> AsyncIterator[int]:
        yield x
        if x == 2:
            raise ValueError("inside agen")
        yield -x

    # The value made before the failure stays passed on (docs/errors.md,
    # "Failures part-way through an expansion"); the rest of item 2 is skipped.
    stream = expand([1, 2, 3])
    assert await stream.collect() == [1, -1, 2, 3, -3]
    [failure] = stream.failures
    assert failure.item == 2
    assert failure.values_passed_on == 1


@pytest.mark.anyio
async def test_diff_call_time_side_inputs_do_not_stick_to_the_task() -> None:
    assert await Pipeline().add(add_value)([1, 2], 7).collect() == [8, 9]

    assert await Pipeline().add(add_value)([1, 2], 3).collect() == [4, 5]
    assert await add_value.with_inputs(1)([1, 2]).collect() == [2, 3]


@pytest.mark.anyio
async def test_diff_side_inputs_given_to_a_source_are_used_by_that_run_only() -> None:
    @single_task
    async def count_to(*, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    pipeline = count_to | bsum

    assert await pipeline(n=5).collect() == [1, 5, 4]
    assert await pipeline(n=3).collect() == [1, 2]


@pytest.mark.anyio
async def test_diff_coroutine_function_side_input_is_called_for_every_run() -> None:
    side = Resolutions(100)
    task = add_value.with_inputs(side.get)

    assert await task([1]).collect() == [101]
    side.value = 200
    assert await task([1]).collect() == [201]
    assert side.count == 2


@pytest.mark.anyio
async def test_diff_coroutine_side_input_result_is_reused_by_later_runs() -> None:
    side = Resolutions(100)
    task = add_value.with_inputs(side.get())

    assert await task([1]).collect() == [101]
    assert await task([2]).collect() == [102]
    assert side.count == 1


@virtual_clock
async def test_diff_early_break_stops_every_call_still_running() -> None:
    finished: list[int] = []

    @single_task
    async def slow_after_first(x: int) -> int:
        await anyio.sleep(0 if x == 0 else 1)
        finished.append(x)
        return x

    async for result in slow_after_first(range(10)):
        assert result == 0
        break
    await anyio.sleep(5)

    assert finished == [0]


@pytest.mark.anyio
async def test_diff_context_does_not_leak_after_an_early_break() -> None:
    async for _ in context_snapshot(["a", "b"]):
        break

    assert get_current_context() is None


@pytest.mark.anyio
async def test_diff_a_slow_consumer_stops_the_source_from_being_read_ahead() -> None:
    pulled = 0

    async def endless() -> AsyncIterator[int]:
        nonlocal pulled
        while True:
            pulled += 1
            yield pulled

    async with double.open(endless()) as stream:
        async for _ in stream:
            for _ in range(10):
                await anyio.lowlevel.checkpoint()  # a slow consumer: others run meanwhile
            break

    # the default window is 256 items
    assert 1 <= pulled <= 512


@pytest.mark.anyio
async def test_diff_max_parallelism_caps_calls_in_flight() -> None:
    running = peak = 0

    @single_task
    async def track(x: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.001)
        running -= 1
        return x

    await track.with_context(max_parallelism=2)(range(10)).collect()

    assert peak == 2


@pytest.mark.parametrize(
    "make",
    [
        lambda: single_task(on_error="bogus"),
        lambda: batch_task(max_size=2, on_error="skip"),
        lambda: SingleTask(triple, on_error="ignore"),
        lambda: PipelineContext(execution_mode="fast"),
        lambda: double.with_execution_mode("fast"),
        lambda: Pipeline().add(double).with_context(execution_mode="parallel"),
    ],
    ids=["single_task", "batch_task", "SingleTask", "PipelineContext", "task", "pipeline"],
)
def test_diff_unknown_on_error_or_execution_mode_raises_value_error(make: Any) -> None:
    with pytest.raises(ValueError, match=r"on_error|execution_mode"):
        make()


def test_diff_bare_batch_task_decorator_raises_type_error() -> None:
    with pytest.raises(TypeError, match="parentheses"):
        batch_task(total)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_diff_as_completed_result_has_collect() -> None:
    pipeline = multiply_by_two | add_ten

    assert sorted(await pipeline.as_completed([1, 2, 3]).collect()) == [12, 14, 16]


@virtual_clock
async def test_diff_stream_as_completed_releases_in_completion_order() -> None:
    @single_task
    async def slow(x: int) -> int:
        await anyio.sleep(x / 10)
        return x

    assert await slow([3, 1, 2]).as_completed().collect() == [1, 2, 3]


@pytest.mark.anyio
async def test_diff_batch_error_handler_receives_the_batch() -> None:
    handler = Recording(True, [0, 0])

    @batch_task(max_size=2, error_handler=handler)
    def fails_on_three(batch: list[int]) -> list[int]:
        if 3 in batch:
            raise ValueError("three")
        return batch

    assert await fails_on_three([1, 2, 3, 4, 5]).collect() == [1, 2, 0, 0, 5]
    assert [item for _, item, _, _ in handler.calls] == [[3, 4]]


@pytest.mark.anyio
async def test_diff_task_call_with_no_data_runs_a_zero_input_source() -> None:
    assert await zero_src().collect() == [0, 1, 2, 3, 4]


@pytest.mark.anyio
async def test_diff_task_call_accepts_side_inputs() -> None:
    assert await add_value([1, 2], 3).collect() == [4, 5]


@pytest.mark.anyio
async def test_diff_tasks_support_with_context_with_execution_mode_and_open() -> None:
    assert await context_snapshot.with_context(foo=1)(["x"]).collect() == [
        ("ordered", None, {"foo": 1}, True)
    ]
    assert await double.with_execution_mode("as_completed")([1]).collect() == [2]
    async with double.open([1, 2]) as stream:
        assert [item async for item in stream] == [2, 4]


@pytest.mark.anyio
async def test_a_consumed_stream_iterates_as_empty() -> None:
    # conveyor-streaming 1.2's own suite: a second ``async for`` yields nothing.
    stream = double([1])
    assert [x async for x in stream] == [2]
    assert [x async for x in stream] == []
    assert await stream.collect() == []

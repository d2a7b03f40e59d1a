"""Pipelines: composition, inputs, runs (api.md section 3)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

from conveyor import AsyncStream, Pipeline, PipelineContext, single_task

pytestmark = pytest.mark.anyio


@single_task
async def inc(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return x + 1


@single_task
def double(x: int) -> int:
    return 2 * x


@single_task
def ident(x: object) -> object:
    return x


@single_task
def seen(x: object) -> tuple[object]:
    return (x,)  # a tuple is one item, so even None comes through


async def test_pipe_operator_chains_stages_in_order() -> None:
    assert await (inc | double)([1, 2]).collect() == [4, 6]
    assert await (double | inc)([1, 2]).collect() == [3, 5]


async def test_composition_never_mutates_its_operands() -> None:
    first = inc | double
    second = first | inc
    third = inc | first
    assert len(first.stages) == 2
    assert (len(second.stages), len(third.stages)) == (3, 3)
    assert await first([1]).collect() == [4]
    assert await (first | first)([1]).collect() == [10]


async def test_add_appends_to_the_pipeline_and_returns_it() -> None:
    pipeline = Pipeline()
    assert pipeline.add(inc).add(double, inc) is pipeline
    assert await pipeline([1]).collect() == [5]


async def test_a_pipeline_runs_many_times() -> None:
    pipeline = inc | double
    for _ in range(3):
        assert await pipeline([1, 2, 3]).collect() == [4, 6, 8]


async def test_concurrent_runs_of_one_pipeline_do_not_see_each_other() -> None:
    pipeline = inc | double
    results: dict[int, list[int]] = {}

    async def run(start: int) -> None:
        results[start] = await pipeline(range(start, start + 50)).collect()

    async with anyio.create_task_group() as tg:
        for start in range(0, 1000, 100):
            tg.start_soon(run, start)
    for start, values in results.items():
        assert values == [2 * (x + 1) for x in range(start, start + 50)]


async def test_nothing_runs_until_the_stream_is_iterated() -> None:
    calls: list[int] = []

    @single_task
    def record(x: int) -> int:
        calls.append(x)
        return x

    stream = record([1, 2, 3])
    await anyio.sleep(0.01)
    assert calls == []
    assert await stream.collect() == [1, 2, 3]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([1, 2], [1, 2]),
        (range(3), [0, 1, 2]),
        ({5, 6}, [5, 6]),
        ("text", ["text"]),
        (b"raw", [b"raw"]),
        ((1, 2), [(1, 2)]),
        ({"k": 1}, [{"k": 1}]),
        (42, [42]),
        (None, [None]),
    ],
)
async def test_input_rule(data: object, expected: list[object]) -> None:
    result = await seen(data).collect()
    assert sorted(result, key=repr) == sorted([(item,) for item in expected], key=repr)


async def test_generator_input_is_iterated_lazily() -> None:
    def numbers() -> Iterator[int]:
        yield from range(4)

    assert await double(numbers()).collect() == [0, 2, 4, 6]


async def test_async_generator_input_is_iterated() -> None:
    async def numbers() -> AsyncIterator[int]:
        for number in range(4):
            await anyio.lowlevel.checkpoint()
            yield number

    assert await double(numbers()).collect() == [0, 2, 4, 6]


async def test_another_stream_is_valid_input() -> None:
    assert await double(inc([1, 2, 3])).collect() == [4, 6, 8]


async def test_async_stream_wraps_any_async_iterable() -> None:
    async def numbers() -> AsyncIterator[int]:
        yield 1
        yield 2

    assert [x async for x in AsyncStream(numbers())] == [1, 2]
    assert await AsyncStream([3, 4]).collect() == [3, 4]


async def test_a_stream_read_again_yields_nothing() -> None:
    stream = inc([1, 2])
    assert await stream.collect() == [2, 3]
    assert await stream.collect() == []
    assert [x async for x in stream] == []
    assert await stream.first() is None
    async with stream.open() as results:
        assert [x async for x in results] == []


async def test_a_stream_left_by_break_is_exhausted() -> None:
    stream = inc(range(100))
    async for _ in stream:
        break
    assert [x async for x in stream] == []


async def test_a_stream_is_exhausted_once_its_run_is_open() -> None:
    stream = inc([1, 2])
    async with stream.open() as results:
        assert await stream.collect() == []  # the run belongs to the first reader
        assert [x async for x in results] == [2, 3]


async def test_as_completed_on_a_used_stream_yields_nothing() -> None:
    stream = inc([1, 2])
    assert await stream.collect() == [2, 3]
    assert await stream.as_completed().collect() == []


async def test_as_completed_while_the_stream_is_read_yields_nothing_and_changes_nothing() -> None:
    stream = inc(range(10))
    read = []
    async for x in stream:
        read.append(x)
        if x == 1:
            assert await stream.as_completed().collect() == []
    assert read == list(range(1, 11))  # the reading under way went on, whole and in order


async def test_as_completed_takes_over_the_stream_s_run() -> None:
    stream = inc([1, 2])
    assert sorted(await stream.as_completed().collect()) == [2, 3]
    assert await stream.collect() == []
    assert await stream.as_completed().collect() == []


async def test_call_time_side_inputs_feed_the_first_stage_for_that_run_only() -> None:
    @single_task
    def add(x: int, amount: int, *, scale: int = 1) -> int:
        return (x + amount) * scale

    pipeline = add.with_inputs(1, scale=10) | double
    assert await pipeline([1, 2]).collect() == [40, 60]
    assert await pipeline([1, 2], 5).collect() == [120, 140]
    assert await pipeline([1, 2], scale=1).collect() == [4, 6]
    assert await pipeline([1, 2]).collect() == [40, 60]


async def test_left_operand_context_wins_in_composition() -> None:
    left = inc.with_execution_mode("as_completed")
    right = double.with_context(max_parallelism=3)
    combined = left | right
    assert combined.context.execution_mode == "as_completed"
    assert combined.context.max_parallelism is None
    assert (right | left).context.max_parallelism == 3


async def test_with_context_returns_a_new_pipeline_and_puts_unknown_keys_in_data() -> None:
    base = inc | double
    configured = base.with_context(execution_mode="as_completed", region="eu")
    assert base.context == PipelineContext()
    assert configured.context.execution_mode == "as_completed"
    assert configured.context.data == {"region": "eu"}


async def test_guide_context_round_trip_via_dict() -> None:
    context = PipelineContext(execution_mode="as_completed")
    pipeline = (inc | double).with_context(**context.__dict__)
    assert pipeline.context.execution_mode == "as_completed"
    assert sorted(await pipeline([1, 2]).collect()) == [4, 6]


async def test_empty_pipeline_passes_data_through() -> None:
    assert await Pipeline()([1, 2]).collect() == [1, 2]

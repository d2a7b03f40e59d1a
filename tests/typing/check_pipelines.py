"""Static typing of tasks and pipelines: checked by mypy, never run.

``tests/test_typing.py`` runs ``mypy --strict tests/typing``. Positive cases
use ``assert_type`` (exact types); each expected error is a line ending in
``# type: ignore[<code>]``, and because ``--strict`` turns on
``warn_unused_ignores``, an expected error that mypy does *not* report fails
the check too. Nothing here is executed: statements that would fail at run
time live inside functions that are never called.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterator, Sequence
from typing import Any

from typing_extensions import assert_type

from conveyor import AsyncStream, BatchTask, Pipeline, SingleTask, batch_task, single_task
from conveyor._engine._run import ResultStream, RunScope

# -- the output rule: In is the item parameter, Out what one call produces ----


@single_task
async def parse(line: str) -> int:
    return int(line)


@single_task
async def maybe_even(n: int) -> int | None:  # None drops the item
    return n if n % 2 == 0 else None


@single_task
async def split_words(text: str) -> list[str]:  # a list is flattened
    return text.split()


@single_task
async def countdown(n: int) -> AsyncIterator[int]:  # an async generator is drained
    for i in range(n, 0, -1):
        yield i


@single_task
async def echo(text: str) -> AsyncIterable[str]:  # however the async generator is typed
    yield text


@single_task
def double(n: int) -> int:  # sync functions are tasks too
    return 2 * n


@single_task
def sync_positive(n: float) -> float | None:
    return n if n > 0 else None


@single_task
def sync_digits(n: int) -> list[str]:
    return list(str(n))


@single_task
def sync_pairs(n: int) -> Iterator[tuple[int, int]]:  # a generator is drained
    yield (n, n)


@single_task
def is_big(n: int) -> bool:
    return n > 100


@single_task
def to_text(n: object) -> str:  # accepts anything
    return str(n)


@single_task
async def drop_all(n: int) -> None:  # drops every item: nothing comes out
    return None


assert_type(parse, SingleTask[str, int])
assert_type(maybe_even, SingleTask[int, int])
assert_type(split_words, SingleTask[str, str])
assert_type(countdown, SingleTask[int, int])
assert_type(echo, SingleTask[str, str])
assert_type(double, SingleTask[int, int])
assert_type(sync_positive, SingleTask[float, float])
assert_type(sync_digits, SingleTask[int, str])
assert_type(sync_pairs, SingleTask[int, tuple[int, int]])
assert_type(is_big, SingleTask[int, bool])
assert_type(to_text, SingleTask[object, str])
assert_type(drop_all.name, str)


# -- options, side inputs, direct construction ----------------------------------


@single_task(on_error="skip_item", retry_attempts=3, concurrency_limit=10)
async def scaled(n: int, factor: float, *, offset: float = 0.0) -> float:
    return n * factor + offset  # extra parameters are side inputs


@single_task(timeout=1.0)
def scaled_rows(n: int, width: int) -> Iterator[list[int]]:
    yield [n] * width


assert_type(scaled, SingleTask[int, float])
assert_type(scaled_rows, SingleTask[int, list[int]])
assert_type(scaled.with_inputs(2.0, offset=1.0), SingleTask[int, float])


async def _plain_async(n: int, label: str) -> str:
    return f"{label}{n}"


def _plain_gen(n: int) -> Iterator[bytes]:
    yield bytes(n)


assert_type(SingleTask(_plain_async), SingleTask[int, str])
assert_type(SingleTask(_plain_gen, concurrency_limit=2), SingleTask[int, bytes])


# -- zero-input sources: no item parameter, so In is Any ------------------------


@single_task
async def numbers() -> AsyncIterator[int]:
    for i in range(3):
        yield i


@single_task
def letters() -> list[str]:
    return ["a", "b"]


@single_task
def flags(*, enabled: bool = True) -> Iterator[bool]:  # keyword-only: still a source
    yield enabled


assert_type(numbers, SingleTask[Any, int])
assert_type(letters, SingleTask[Any, str])
assert_type(flags, SingleTask[Any, bool])


# -- batch tasks: In is the element type of the batch ---------------------------


@batch_task(max_size=100)
async def total(batch: list[int]) -> int:  # a scalar: one item per batch
    return sum(batch)


@batch_task(max_size=10, min_size=2)
async def labels(batch: list[int], prefix: str) -> list[str]:  # flattened
    return [f"{prefix}{n}" for n in batch]


@batch_task(5)
def halves(batch: Sequence[float]) -> list[float]:  # any parameter a list fits
    return [x / 2 for x in batch]


@batch_task(max_size=3)
async def chunks(batch: list[str]) -> AsyncIterator[tuple[str, ...]]:
    yield tuple(batch)


def _batch_gen(batch: list[bytes]) -> Iterator[int]:
    yield len(batch)


assert_type(total, BatchTask[int, int])
assert_type(labels, BatchTask[int, str])
assert_type(halves, BatchTask[float, float])
assert_type(chunks, BatchTask[str, tuple[str, ...]])
assert_type(BatchTask(_batch_gen, 1, 10), BatchTask[bytes, int])


# -- methods: read from an instance, a task is bound ----------------------------
# A bound single task's input is Any (its type does not record the parameter
# after ``self``); a batch method is told apart by its list parameter, so a
# bound batch task keeps its types.


class Service:
    def __init__(self, scale: int) -> None:
        self.scale = scale

    @single_task
    async def fetch(self, n: int) -> str:
        return str(n * self.scale)

    @single_task(concurrency_limit=4)
    def measure(self, text: str) -> list[int]:
        return [len(text)]

    @batch_task(max_size=8)
    async def store(self, batch: list[int]) -> int:
        return len(batch)


service = Service(2)
assert_type(Service.fetch, SingleTask[Service, str])  # unbound: as decorated
assert_type(service.fetch, SingleTask[Any, str])
assert_type(service.measure, SingleTask[Any, int])
assert_type(service.store, BatchTask[int, int])
assert_type(Service.store, BatchTask[int, int])
assert_type(service.fetch | service.measure, Pipeline[Any, int])
assert_type(service.fetch | service.measure | service.store, Pipeline[Any, int])
assert_type(double | service.fetch | service.measure, Pipeline[int, int])


# -- pipelines ------------------------------------------------------------------

three = parse | double | sync_digits
assert_type(three, Pipeline[str, str])
assert_type(parse | maybe_even | countdown, Pipeline[str, int])
assert_type(split_words | parse | total, Pipeline[str, int])
assert_type(numbers | double | to_text, Pipeline[Any, str])
assert_type(total | labels, Pipeline[int, str])
assert_type(three | split_words, Pipeline[str, str])  # Pipeline | task
assert_type(parse | (double | is_big), Pipeline[str, bool])  # task | Pipeline
assert_type((parse | double) | (is_big | to_text), Pipeline[str, str])  # Pipeline | Pipeline
assert_type(three.with_execution_mode("as_completed"), Pipeline[str, str])
assert_type(three.with_context(max_parallelism=4), Pipeline[str, str])
assert_type(double.with_execution_mode("ordered"), Pipeline[int, int])
assert_type(Pipeline(), Pipeline[Any, Any])
assert_type(Pipeline().add(parse, double), Pipeline[Any, Any])
assert_type((parse | double).add(is_big), Pipeline[str, Any])

# variance: a stage producing bool feeds one accepting int (bool is an int)
assert_type(is_big | double, Pipeline[int, int])
assert_type(double | is_big | double | to_text, Pipeline[int, str])
assert_type(maybe_even | sync_positive, Pipeline[int, float])  # int is accepted as float
widened: SingleTask[bool, object] = double  # accepts less, promises less
narrowed_pipe: Pipeline[bool, int] = is_big | double
bools: AsyncStream[bool] = is_big([1, 2])
ints: AsyncStream[int] = bools


async def run_pipelines() -> None:
    assert_type(three(["1", "2"]), AsyncStream[str])
    assert_type((parse | double)(["1", "2"]), AsyncStream[int])
    assert_type(three.as_completed(["1"]), AsyncStream[str])
    assert_type(three(["1"]).as_completed(), AsyncStream[str])
    assert_type(await three(["1", "2"]).collect(), list[str])
    assert_type(await three("12").first(), str | None)
    assert_type(three.open(["1"]), RunScope[str])
    async with three.open(["1", "2"]) as results:
        assert_type(results, ResultStream[str])
        async for item in results:
            assert_type(item, str)
    async for value in (parse | double)(["1", "2"]):
        assert_type(value, int)
    async with three(["1"]).open() as more:
        assert_type(more, ResultStream[str])

    # a task is a one-stage pipeline
    assert_type(double([1, 2]), AsyncStream[int])
    assert_type(await double(range(3)).collect(), list[int])
    assert_type(await split_words.as_completed("a b").collect(), list[str])
    assert_type(countdown.open([3]), RunScope[int])
    assert_type(await total(range(10)).collect(), list[int])
    assert_type(await double.process([1, 2]), AsyncStream[int])

    # data: one item, an iterable or an async iterable of the first stage's input
    assert_type(double(5), AsyncStream[int])
    assert_type(double(double([1])), AsyncStream[int])
    assert_type(parse("7"), AsyncStream[int])
    assert_type(numbers(), AsyncStream[int])  # a source runs without data
    assert_type(await (numbers | double | to_text)().collect(), list[str])
    assert_type(scaled([1, 2], 3.0), AsyncStream[float])  # side inputs for this run
    assert_type(await service.fetch([1, 2]).collect(), list[str])
    assert_type(await (service.fetch | service.measure)([1]).collect(), list[int])


# -- expected errors: each must be reported, or --strict's unused-ignore fails --


def mismatched_stages() -> None:
    parse | parse  # type: ignore[operator]
    double | split_words  # type: ignore[operator]
    split_words | total  # type: ignore[operator]
    total | split_words  # type: ignore[operator]
    three | double  # type: ignore[operator]
    double | three  # type: ignore[operator]
    (parse | double) | (split_words | parse)  # type: ignore[operator]
    service.fetch | double  # type: ignore[operator]
    service.fetch | service.store  # type: ignore[operator]
    sync_positive | double  # type: ignore[operator]  # float is not an int
    "text" | parse  # type: ignore[operator]
    parse | "text"  # type: ignore[operator]
    three | (lambda s: s)  # type: ignore[operator]


def mismatched_data() -> None:
    double(["a", "b"])  # type: ignore[list-item]
    double("12")  # type: ignore[arg-type]
    three([1, 2])  # type: ignore[list-item]
    total(["x"])  # type: ignore[list-item]


async def mismatched_results() -> None:
    texts: list[int] = await three(["1"]).collect()  # type: ignore[assignment]
    widened_in: SingleTask[object, int] = double  # type: ignore[assignment]
    widened_out: SingleTask[int, bool] = double  # type: ignore[assignment]
    stream: AsyncStream[bool] = double([1])  # type: ignore[assignment]
    del texts, widened_in, widened_out, stream


def misused_decorators() -> None:
    batch_task(_batch_gen)  # type: ignore[arg-type]  # batch_task needs parentheses
    single_task(on_eror="skip_item")  # type: ignore[call-overload]

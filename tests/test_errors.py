"""Error policies (api.md section 5): fail, skip, retry, deadlines, handlers, records."""

from __future__ import annotations

import itertools
import logging
import random
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from conveyor import (
    ErrorHandler,
    Failure,
    LoggingErrorHandler,
    RetryConfig,
    batch_task,
    single_task,
)

from .conftest import virtual_clock

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup

pytestmark = pytest.mark.anyio

MODES = ["ordered", "as_completed"]


class Flaky:
    """Fails the first ``failures`` attempts for each item in ``bad``; records attempt times."""

    def __init__(self, bad: set[int], failures: int = 10**9, exc: type[Exception] = ValueError):
        self.bad = bad
        self.failures = failures
        self.exc = exc
        self.attempts: dict[int, list[float]] = {}

    async def __call__(self, x: int) -> int:
        times = self.attempts.setdefault(x, [])
        times.append(anyio.current_time())
        if x in self.bad and len(times) <= self.failures:
            raise self.exc(f"bad {x}")
        return x


# -- fail ------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_first_failure_fails_the_run_with_the_original_exception(mode: str) -> None:
    task = single_task(Flaky({3}), task_name="flaky").with_execution_mode(mode)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bad 3") as caught:
        await task(range(10)).collect()
    assert type(caught.value) is ValueError
    assert any("'flaky'" in note and "3" in note for note in caught.value.__notes__)


async def test_failure_in_a_middle_stage_fails_the_run() -> None:
    @single_task
    def ident(x: int) -> int:
        return x

    with pytest.raises(ValueError, match="bad 1"):
        await (ident | single_task(Flaky({1})) | ident)([0, 1, 2]).collect()


async def test_results_released_before_the_failure_stay_released() -> None:
    got: list[int] = []
    consumer_has_four = anyio.Event()

    @single_task
    async def fail_late(x: int) -> int:
        if x == 5:
            await consumer_has_four.wait()
            raise LookupError("five")
        return x

    with pytest.raises(LookupError):
        async for value in fail_late(range(10)):
            got.append(value)
            if value == 4:
                consumer_has_four.set()
    assert got == [0, 1, 2, 3, 4]


async def test_several_independent_failures_arrive_as_an_exception_group() -> None:
    go = anyio.Event()

    @single_task
    async def two_failures(x: int) -> int:
        if x == 0:
            await anyio.sleep(0.01)
            go.set()
            raise ValueError("first")
        try:
            await go.wait()
            await anyio.sleep(3600)
        except anyio.get_cancelled_exc_class():
            raise RuntimeError("failed while being cancelled") from None
        return x

    with pytest.raises(ExceptionGroup) as caught:
        await two_failures([0, 1]).collect()
    kinds = sorted(type(e).__name__ for e in caught.value.exceptions)
    assert kinds == ["RuntimeError", "ValueError"]


@pytest.mark.parametrize("policy", ["fail", "skip_item"])
async def test_base_exceptions_are_never_retried_skipped_or_handled(policy: str) -> None:
    attempts = 0

    class Handler(ErrorHandler):
        async def handle_error(
            self, error: Exception, item: Any, task_name: str, attempt: int
        ) -> tuple[bool, Any]:
            raise AssertionError("a BaseException must not reach the handler")  # pragma: no cover

    @single_task(on_error=policy, retry_attempts=3, retry_delay=0, error_handler=Handler())  # type: ignore[arg-type]
    async def interrupt(x: int) -> int:
        nonlocal attempts
        attempts += 1
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await interrupt([1]).collect()
    assert attempts == 1


async def test_consumer_exception_wins_over_nothing_and_is_unchanged() -> None:
    error = ArithmeticError("consumer")

    @single_task
    async def ident(x: int) -> int:
        return x

    with pytest.raises(ArithmeticError) as caught:
        async with ident.open(range(5)) as stream:
            async for _ in stream:
                raise error
    assert caught.value is error
    assert not getattr(error, "__notes__", None)


# -- skip ------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_skip_item_drops_failed_items_and_records_them(mode: str) -> None:
    flaky = Flaky({2, 5})
    task = single_task(flaky, on_error="skip_item", task_name="flaky")
    stream = task.with_execution_mode(mode)(range(8))  # type: ignore[arg-type]
    results = await stream.collect()
    assert sorted(results) == [0, 1, 3, 4, 6, 7]
    if mode == "ordered":
        assert results == [0, 1, 3, 4, 6, 7]
    records = sorted(stream.failures, key=lambda f: f.item)
    assert [(f.item, f.task_name, f.attempts, type(f.exception)) for f in records] == [
        (2, "flaky", 1, ValueError),
        (5, "flaky", 1, ValueError),
    ]
    assert all(isinstance(f, Failure) for f in records)


@pytest.mark.parametrize("mode", MODES)
async def test_skip_batch_drops_failed_batches_and_records_them(mode: str) -> None:
    @batch_task(max_size=2, on_error="skip_batch")
    async def total(batch: list[int]) -> int:
        if 3 in batch:
            raise ValueError("has 3")
        return sum(batch)

    stream = total.with_execution_mode(mode)(range(6))  # type: ignore[arg-type]
    assert sorted(await stream.collect()) == [1, 9]
    assert [f.item for f in stream.failures] == [[2, 3]]


async def test_failures_are_readable_during_the_run() -> None:
    @single_task(on_error="skip_item")
    async def odd_fails(x: int) -> int:
        if x % 2:
            raise ValueError(x)
        return x

    seen_during: list[int] = []
    stream = odd_fails(range(6))
    async for value in stream:
        seen_during.append(len(stream.failures))
        assert value % 2 == 0
    assert len(stream.failures) == 3
    assert seen_during[-1] >= 2


async def test_failed_items_can_be_run_again() -> None:
    first_try = Flaky({1, 3}, failures=1)
    task = single_task(first_try, on_error="skip_item")
    stream = task(range(5))
    assert await stream.collect() == [0, 2, 4]
    again = await task([failure.item for failure in stream.failures]).collect()
    assert again == [1, 3]


async def test_open_exposes_failures_on_the_result_stream() -> None:
    task = single_task(Flaky({0}), on_error="skip_item")
    async with task.open([0, 1]) as results:
        assert [x async for x in results] == [1]
        assert [f.item for f in results.failures] == [0]


# -- retries ---------------------------------------------------------------


@virtual_clock
async def test_retries_wait_with_exponential_backoff() -> None:
    flaky = Flaky({1}, failures=3)
    task = single_task(flaky, retry_attempts=4, retry_delay=0.5)
    assert await task([1]).collect() == [1]
    times = flaky.attempts[1]
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
    assert gaps == [0.5, 1.0, 2.0]


@virtual_clock
async def test_retry_delay_is_capped_by_retry_max_delay() -> None:
    flaky = Flaky({1}, failures=4)
    task = single_task(flaky, retry_attempts=5, retry_delay=1.0, retry_max_delay=3.0)
    assert await task([1]).collect() == [1]
    times = flaky.attempts[1]
    assert [round(b - a, 6) for a, b in itertools.pairwise(times)] == [1.0, 2.0, 3.0, 3.0]


@virtual_clock
async def test_retry_delay_is_constant_without_backoff() -> None:
    flaky = Flaky({1}, failures=2)
    task = single_task(flaky, retry_attempts=3, retry_delay=0.25, retry_exponential_backoff=False)
    assert await task([1]).collect() == [1]
    times = flaky.attempts[1]
    assert [round(b - a, 6) for a, b in itertools.pairwise(times)] == [0.25, 0.25]


@virtual_clock
async def test_jitter_keeps_each_delay_between_zero_and_the_backoff() -> None:
    random.seed(1234)
    flaky = Flaky(set(range(20)), failures=3)
    task = single_task(flaky, retry_attempts=4, retry_delay=1.0, retry_jitter=True)
    assert sorted(await task(range(20)).collect()) == list(range(20))
    gaps = []
    for times in flaky.attempts.values():
        for k, (a, b) in enumerate(itertools.pairwise(times)):
            gap = b - a
            assert 0.0 <= gap <= 2.0**k + 1e-9
            gaps.append(gap)
    assert len({round(g, 6) for g in gaps}) > 10  # really randomized


async def test_retries_exhausted_then_the_policy_applies() -> None:
    flaky = Flaky({1})
    task = single_task(flaky, retry_attempts=3, retry_delay=0, on_error="skip_item")
    stream = task([0, 1, 2])
    assert await stream.collect() == [0, 2]
    assert len(flaky.attempts[1]) == 3
    assert stream.failures[0].attempts == 3


async def test_retry_on_limits_which_exceptions_are_retried() -> None:
    flaky = Flaky({1}, exc=KeyError)
    task = single_task(
        flaky, retry_attempts=5, retry_delay=0, retry_on=(ValueError,), on_error="skip_item"
    )
    assert await task([1, 2]).collect() == [2]
    assert len(flaky.attempts[1]) == 1


async def test_retry_config_object_is_accepted() -> None:
    flaky = Flaky({1}, failures=2)
    config = RetryConfig(max_attempts=3, base_delay=0, jitter=False)
    assert await single_task(flaky, retry_config=config)([1]).collect() == [1]
    assert len(flaky.attempts[1]) == 3


async def test_batch_tasks_retry_the_batch() -> None:
    calls: list[list[int]] = []

    @batch_task(max_size=3, retry_attempts=2, retry_delay=0)
    def total(batch: list[int]) -> int:
        calls.append(batch)
        if len(calls) == 1:
            raise ValueError("once")
        return sum(batch)

    assert await total([1, 2, 3]).collect() == [6]
    assert calls == [[1, 2, 3], [1, 2, 3]]


# -- deadlines -------------------------------------------------------------


@virtual_clock
async def test_timeout_fails_a_slow_attempt_with_timeout_error() -> None:
    @single_task(timeout=1.0)
    async def slow(x: int) -> int:
        await anyio.sleep(5)
        return x

    with pytest.raises(TimeoutError):
        await slow([1]).collect()


@virtual_clock
async def test_timed_out_attempt_is_retried_then_succeeds() -> None:
    attempts: list[float] = []

    @single_task(timeout=1.0, retry_attempts=3, retry_delay=0.5)
    async def slow_first(x: int) -> int:
        attempts.append(anyio.current_time())
        await anyio.sleep(5 if len(attempts) == 1 else 0.1)
        return x

    start = anyio.current_time()
    assert await slow_first([7]).collect() == [7]
    assert [round(t - start, 6) for t in attempts] == [0.0, 1.5]


@virtual_clock
async def test_timed_out_item_is_skipped_and_recorded() -> None:
    @single_task(timeout=1.0, on_error="skip_item")
    async def slow_two(x: int) -> int:
        await anyio.sleep(5 if x == 2 else 0)
        return x

    stream = slow_two([1, 2, 3])
    assert await stream.collect() == [1, 3]
    assert [(f.item, type(f.exception)) for f in stream.failures] == [(2, TimeoutError)]


# -- handlers ----------------------------------------------------------------


class Replace(ErrorHandler):
    def __init__(self, value: Any, go_on: bool = True) -> None:
        self.value = value
        self.go_on = go_on
        self.calls: list[tuple[str, Any, str, int]] = []

    async def handle_error(
        self, error: Exception, item: Any, task_name: str, attempt: int
    ) -> tuple[bool, Any]:
        self.calls.append((type(error).__name__, item, task_name, attempt))
        return self.go_on, self.value


@pytest.mark.parametrize(
    ("replacement", "expected"),
    [(-1, [0, -1, 2]), (None, [0, 2]), ([8, 9], [0, 8, 9, 2])],
)
async def test_handler_replacement_follows_the_output_rules(
    replacement: Any, expected: list[int]
) -> None:
    handler = Replace(replacement)
    task = single_task(
        Flaky({1}), error_handler=handler, retry_attempts=2, retry_delay=0, task_name="t"
    )
    assert await task([0, 1, 2]).collect() == expected
    assert handler.calls == [("ValueError", 1, "t", 2)]


async def test_handler_declining_fails_the_run_with_the_original_error() -> None:
    task = single_task(Flaky({1}), error_handler=Replace(None, go_on=False))
    with pytest.raises(ValueError, match="bad 1"):
        await task([0, 1, 2]).collect()


async def test_batch_handler_sees_the_batch() -> None:
    handler = Replace([0])

    @batch_task(max_size=2, error_handler=handler)
    def total(batch: list[int]) -> int:
        raise ValueError("no")

    assert await total([1, 2, 3]).collect() == [0, 0]
    assert [call[1] for call in handler.calls] == [[1, 2], [3]]


async def test_logging_error_handler_logs_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    task = single_task(
        Flaky({1}), error_handler=LoggingErrorHandler(replacement_value=-1), task_name="t"
    )
    with caplog.at_level(logging.ERROR):
        assert await task([0, 1]).collect() == [0, -1]
    assert any("Error in t (attempt 1): bad 1" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("mode", MODES)
async def test_failed_stage_is_not_mistaken_for_the_end_of_input(mode: str) -> None:
    # After a failure, the stages downstream must not flush a partial batch
    # as if the input had ended normally.
    calls: list[list[int]] = []

    @single_task
    def fail_on_even(x: int) -> int:
        if x % 2 == 0:
            raise ValueError(x)
        return x

    @batch_task(max_size=2)
    def pairs(batch: list[int]) -> int:
        calls.append(batch)
        return sum(batch)

    async def one_at_a_time() -> AsyncIterator[int]:
        for number in (1, 2, 3):
            await anyio.lowlevel.checkpoint()  # so that 1 reaches the batch stage alone
            yield number

    released: list[int] = []
    pipeline = (fail_on_even | pairs).with_execution_mode(mode)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^2\n"):
        async for value in pipeline(one_at_a_time()):
            released.append(value)
    assert released == []
    assert calls == []

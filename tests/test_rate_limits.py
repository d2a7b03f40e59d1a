"""Rate limits (a stage's own, or one RateLimiter shared by stages and runs) and Retry-After.

All timing runs on virtual clocks (``virtual_clock``), so times are exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from conveyor import RateLimit, RateLimiter, batch_task, single_task

from .conftest import virtual_clock


def assert_within_rate(times: list[float], rate: float, burst: int) -> None:
    """Over every span of time, at most ``rate * span + burst`` calls started."""
    times = sorted(times)
    for first in range(len(times)):
        for last in range(first + burst, len(times)):
            calls = last - first + 1
            assert calls <= rate * (times[last] - times[first]) + burst + 1e-6


def timed(times: list[float], **options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``single_task(**options)`` around a function that notes when each call starts."""

    def decorate(function: Callable[[int], Any]) -> Any:
        async def noted(item: int) -> Any:
            times.append(anyio.current_time())
            return function(item)

        noted.__name__ = function.__name__
        return single_task(**options)(noted)

    return decorate


# -- limits and limiters --------------------------------------------------------------


@virtual_clock
async def test_a_shared_limiter_holds_across_three_stages_and_two_concurrent_runs() -> None:
    quota = RateLimiter(20, per=1.0, burst=3)
    times: list[float] = []

    @timed(times, rate_limit=quota)
    def first(item: int) -> int:
        return item + 1

    @timed(times, rate_limit=quota)
    def second(item: int) -> int:
        return item * 2

    @timed(times, rate_limit=quota)
    def third(item: int) -> int:
        return item - 3

    pipeline = first | second | third
    start = anyio.current_time()
    results: list[list[int]] = [[], []]

    async def run(slot: int) -> None:
        results[slot] = await pipeline(range(10)).collect()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, 0)
        tg.start_soon(run, 1)
    assert results == [[(x + 1) * 2 - 3 for x in range(10)]] * 2
    assert len(times) == 60
    assert_within_rate(times, rate=20, burst=3)
    # Exact, not merely below the limit: 3 at once, then one every 50 ms.
    assert max(times) - start == pytest.approx((60 - 3) / 20)


@virtual_clock
async def test_a_rate_limit_paces_calls_strictly_by_default() -> None:
    times: list[float] = []

    @timed(times, rate_limit=RateLimit(4))
    def echo(item: int) -> int:
        return item

    start = anyio.current_time()
    assert await echo(range(5)).collect() == list(range(5))
    assert [t - start for t in times] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])


@virtual_clock
async def test_a_rate_limit_is_each_runs_own_and_a_limiter_is_shared() -> None:
    own: list[float] = []
    shared: list[float] = []

    @timed(own, rate_limit=RateLimit(1))
    def by_limit(item: int) -> int:
        return item

    @timed(shared, rate_limit=RateLimiter(1))
    def by_limiter(item: int) -> int:
        return item

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for task in (by_limit, by_limit, by_limiter, by_limiter):
            tg.start_soon(task(range(2)).collect)
    assert sorted(t - start for t in own) == pytest.approx([0, 0, 1, 1])
    assert sorted(t - start for t in shared) == pytest.approx([0, 1, 2, 3])


@virtual_clock
async def test_a_batch_call_takes_one_token_unless_cost_says_otherwise() -> None:
    per_call: list[float] = []
    per_item: list[float] = []

    @batch_task(max_size=4, rate_limit=RateLimit(2))
    async def by_call(items: list[int]) -> list[int]:
        per_call.append(anyio.current_time())
        return items

    @batch_task(max_size=4, rate_limit=RateLimit(2, burst=4), cost=len)
    async def by_item(items: list[int]) -> list[int]:
        per_item.append(anyio.current_time())
        return items

    start = anyio.current_time()
    assert await by_call(range(12)).collect() == list(range(12))
    assert [t - start for t in per_call] == pytest.approx([0.0, 0.5, 1.0])
    start = anyio.current_time()
    assert await by_item(range(12)).collect() == list(range(12))
    assert [t - start for t in per_item] == pytest.approx([0.0, 2.0, 4.0])  # 4 tokens at 2/s


@virtual_clock
async def test_retries_take_tokens_too() -> None:
    times: list[float] = []

    @single_task(rate_limit=RateLimit(1), retry_attempts=3, retry_delay=0.0)
    async def flaky(item: int) -> int:
        times.append(anyio.current_time())
        if len(times) < 3:
            raise ConnectionError("try again")
        return item

    start = anyio.current_time()
    assert await flaky([7]).collect() == [7]
    assert [t - start for t in times] == pytest.approx([0.0, 1.0, 2.0])


@virtual_clock
async def test_a_cancelled_waiter_takes_no_token() -> None:
    limiter = RateLimiter(1)
    start = anyio.current_time()
    await limiter.acquire()  # the bucket is empty now, full again at 1 s
    with anyio.move_on_after(0.5):
        await limiter.acquire()  # would be served at 1 s: cancelled before
    await limiter.acquire()  # so this one gets the token of 1 s
    assert anyio.current_time() - start == pytest.approx(1.0)
    assert limiter.statistics().granted == 2


@virtual_clock
async def test_waiters_are_served_first_come_first_served() -> None:
    limiter = RateLimiter(10)
    served: list[int] = []

    async def ask(number: int) -> None:
        await limiter.acquire()
        served.append(number)

    async with anyio.create_task_group() as tg:
        for number in range(5):
            tg.start_soon(ask, number)
            await anyio.lowlevel.checkpoint()  # each asks before the next
    assert served == [0, 1, 2, 3, 4]


@virtual_clock
async def test_a_cost_above_burst_is_taken_on_credit() -> None:
    limiter = RateLimiter(1, burst=2)
    start = anyio.current_time()
    await limiter.acquire(5)  # a full bucket: goes at once, 3 tokens owed
    await limiter.acquire()
    assert anyio.current_time() - start == pytest.approx(4.0)  # paid back, then 1 more


@virtual_clock
async def test_pause_holds_back_every_user_of_a_limiter() -> None:
    limiter = RateLimiter(100, burst=5)
    start = anyio.current_time()
    limiter.pause(2.0)
    limiter.pause(1.0)  # a shorter pause does not cut the longer one
    assert limiter.statistics().paused_for == pytest.approx(2.0)
    await limiter.acquire()
    assert anyio.current_time() - start == pytest.approx(2.0)


@virtual_clock
async def test_a_waiting_head_sees_a_pause_that_came_later() -> None:
    limiter = RateLimiter(1)
    start = anyio.current_time()
    await limiter.acquire()
    async with anyio.create_task_group() as tg:
        tg.start_soon(limiter.acquire)  # due at 1 s
        await anyio.sleep(0.5)
        limiter.pause(3.0)  # until 3.5 s
    assert anyio.current_time() - start == pytest.approx(3.5)


def test_a_limiter_starts_over_in_a_new_event_loop() -> None:
    limiter = RateLimiter(1, per=3600.0)

    async def take() -> None:
        with anyio.fail_after(1):
            await limiter.acquire()

    anyio.run(take)
    anyio.run(take, backend="trio")  # another loop, another clock: a full bucket


def test_a_plain_task_has_no_policy_to_apply_unless_rate_limited() -> None:
    def echo(item: int) -> int:
        return item

    assert single_task(echo).stage_spec().policy.is_plain
    assert not single_task(rate_limit=RateLimit(5))(echo).stage_spec().policy.is_plain


# -- Retry-After ------------------------------------------------------------------------


class TooManyRequests(Exception):
    def __init__(self, retry_after: float | None) -> None:
        super().__init__(f"429, retry after {retry_after}")
        self.retry_after = retry_after


def server_says(exc: Exception) -> float | None:
    return exc.retry_after if isinstance(exc, TooManyRequests) else None


def failing_then_ok(times: list[float], errors: list[Exception]) -> Callable[[int], Any]:
    async def call(item: int) -> int:
        times.append(anyio.current_time())
        if errors:
            raise errors.pop(0)
        return item

    return call


@virtual_clock
async def test_a_retry_waits_as_long_as_the_exception_asks() -> None:
    times: list[float] = []
    call = failing_then_ok(times, [TooManyRequests(3.0), ValueError("flaky")])
    task = single_task(retry_attempts=3, retry_delay=0.5, retry_after=server_says)(call)
    start = anyio.current_time()
    assert await task([1]).collect() == [1]
    # 3 s as asked, then the backoff (0.5 s * 2) for an error that asks nothing.
    assert [t - start for t in times] == pytest.approx([0.0, 3.0, 4.0])


@virtual_clock
async def test_retry_after_is_capped_by_retry_max_delay() -> None:
    times: list[float] = []
    call = failing_then_ok(times, [TooManyRequests(3600.0)])
    task = single_task(retry_attempts=2, retry_max_delay=5.0, retry_after=server_says)(call)
    start = anyio.current_time()
    assert await task([1]).collect() == [1]
    assert times[1] - start == pytest.approx(5.0)


@virtual_clock
async def test_a_429_can_pause_a_shared_limiter_for_everyone() -> None:
    quota = RateLimiter(100, burst=10)
    times: list[float] = []

    def pause_everyone(exc: Exception) -> float | None:
        if isinstance(exc, TooManyRequests) and exc.retry_after is not None:
            quota.pause(exc.retry_after)
            return exc.retry_after
        return None

    @single_task(rate_limit=quota, retry_attempts=2, retry_after=pause_everyone)
    async def call(item: int) -> int:
        times.append(anyio.current_time())
        if item == 0 and len(times) == 1:
            await anyio.sleep(0.001)
            raise TooManyRequests(2.0)
        await anyio.sleep(0.01 if item else 0)
        return item

    @single_task(rate_limit=quota)
    async def other(item: int) -> int:
        times.append(anyio.current_time())
        return item

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(call([0]).collect)
        await anyio.sleep(0.5)
        tg.start_soon(other([1]).collect)  # another pipeline, same quota: it waits
    assert [t - start for t in times] == pytest.approx([0.0, 2.001, 2.001])


# -- bad options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: RateLimit(0), ValueError, "rate"),
        (lambda: RateLimit("fast"), TypeError, "rate"),
        (lambda: RateLimit(1, per=-1), ValueError, "per"),
        (lambda: RateLimit(1, burst=1.5), TypeError, "burst"),
        (lambda: RateLimit(1, burst=0), ValueError, "burst"),
        (lambda: single_task(rate_limit=5), TypeError, "rate_limit"),
        (lambda: single_task(cost=len), ValueError, "cost"),
        (lambda: single_task(rate_limit=RateLimit(1), cost=3), TypeError, "cost"),
        (lambda: batch_task(max_size=2, rate_limit="1/s"), TypeError, "rate_limit"),
        (lambda: single_task(retry_after=5), TypeError, "retry_after"),
        (lambda: RateLimiter(1).pause(-1), ValueError, "seconds"),
    ],
)
def test_bad_rate_limit_options_fail_early(
    make: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        make()


@pytest.mark.anyio
@pytest.mark.parametrize(("cost", "error"), [(-1, ValueError), ("one", TypeError)])
async def test_a_bad_cost_fails_the_run(cost: object, error: type[Exception]) -> None:
    @single_task(rate_limit=RateLimit(10), cost=lambda item: cost)
    def echo(item: int) -> int:
        return item

    with pytest.raises(error, match="cost"):
        await echo([1]).collect()


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["single", "batch"])
async def test_an_error_of_the_cost_function_names_the_task_and_the_item(kind: str) -> None:
    def priced(value: Any) -> float:
        raise KeyError("no price")

    def echo(value: Any) -> Any:
        return value

    if kind == "single":
        task: Any = single_task(rate_limit=RateLimit(10), cost=priced)(echo)
        item = "item 1"
    else:
        task = batch_task(max_size=2, rate_limit=RateLimit(10), cost=priced)(echo)
        item = "item [1, 2]"
    with pytest.raises(KeyError) as caught:
        await task([1, 2]).collect()
    notes = [n for n in getattr(caught.value, "__notes__", []) if n.startswith("conveyor: ")]
    assert notes == [f"conveyor: the cost= function of task 'echo' failed on {item}"]


@virtual_clock
async def test_leaving_a_run_while_its_calls_wait_for_tokens_takes_none_of_them() -> None:
    quota = RateLimiter(1)

    @single_task(rate_limit=quota)
    async def echo(item: int) -> int:
        return item

    async with echo.open(range(100)) as results:
        async for first in results:
            assert first == 0
            assert quota.statistics().waiting > 0  # the next calls wait for tokens
            break
    assert quota.statistics().waiting == 0  # the block has stopped every call
    granted = quota.statistics().granted
    await anyio.sleep(10)
    assert quota.statistics().granted == granted  # nobody took a token since
    start = anyio.current_time()
    await quota.acquire()  # and the bucket is full again: no wait
    assert anyio.current_time() == start


@pytest.mark.anyio
@pytest.mark.parametrize("stop", ["break", "failure", "cancel"])
async def test_a_stop_takes_no_token_for_a_call_it_prevents(stop: str) -> None:
    # A waiter granted its tokens just as the run stops must not start its
    # call, and must not keep the tokens either: after every run, the tokens
    # granted equal the calls started. The moment of the stop among the
    # grants varies with the scheduler, so try several runs.
    for _ in range(20):
        quota = RateLimiter(2000, burst=5)
        started = 0

        @single_task(rate_limit=quota)
        async def call(x: int) -> int:
            nonlocal started
            started += 1
            if stop == "failure" and x == 40:
                raise ValueError(x)
            await anyio.lowlevel.checkpoint()
            return x

        with anyio.fail_after(30):
            if stop == "break":
                async with call.open(range(1000)) as results:
                    async for x in results:
                        if x == 40:
                            break
            elif stop == "failure":
                with pytest.raises(ValueError, match="40"):
                    await call(range(1000)).collect()
            else:
                with anyio.move_on_after(0.03):
                    await call(range(1000)).collect()
        assert quota.statistics().granted == started

"""Bad use fails early, with an error that names the problem."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor import (
    BatchTask,
    Pipeline,
    PipelineContext,
    RetryConfig,
    SingleTask,
    batch_task,
    single_task,
)


def work(x: int) -> int:
    return x


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"max_size": 0}, ValueError, "max_size"),
        ({"min_size": 0}, ValueError, "min_size"),
        ({"min_size": 5, "max_size": 2}, ValueError, "min_size"),
        ({"max_size": 2.5}, TypeError, "max_size"),
        ({"max_size": 2, "on_error": "ignore"}, ValueError, "on_error"),
        ({"max_size": 2, "retry_attempts": 0}, ValueError, "retry_attempts"),
        ({"max_size": 2, "retry_delay": -1}, ValueError, "retry_delay"),
        ({"max_size": 2, "retry_max_delay": -1}, ValueError, "retry_max_delay"),
        ({"max_size": 2, "timeout": 0}, ValueError, "timeout"),
        ({"max_wait": 0.1}, ValueError, "max_wait=0.1 cannot take effect"),
        ({"min_size": 3, "max_size": 3, "max_wait": 1}, ValueError, "max_size above min_size"),
        ({"max_size": 2, "task_name": 3}, TypeError, "task_name must be a str"),
        ({"max_size": 2, "run_in_thread": "yes"}, TypeError, "run_in_thread must be a bool"),
    ],
)
def test_batch_task_rejects_bad_options(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        batch_task(**options)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"concurrency_limit": 0}, ValueError, "concurrency_limit"),
        ({"concurrency_limit": -3}, ValueError, "concurrency_limit"),
        ({"concurrency_limit": True}, TypeError, "concurrency_limit"),
        ({"on_error": "explode"}, ValueError, "on_error"),
        ({"retry_attempts": 0}, ValueError, "retry_attempts"),
        ({"retry_attempts": 1.5}, TypeError, "retry_attempts"),
        ({"retry_delay": -0.1}, ValueError, "retry_delay"),
        ({"retry_max_delay": -1}, ValueError, "retry_max_delay"),
        ({"retry_on": KeyboardInterrupt}, TypeError, "retry_on"),
        ({"timeout": -1}, ValueError, "timeout"),
        ({"timeout": "soon"}, TypeError, "timeout"),
        ({"error_handler": object()}, TypeError, "error_handler"),
        ({"chunk_size": 0}, ValueError, "chunk_size"),
        ({"task_name": 3}, TypeError, "task_name must be a str"),
        ({"task_name": b"name"}, TypeError, "task_name must be a str"),
        ({"run_in_thread": "yes"}, TypeError, "run_in_thread must be a bool"),
        ({"run_in_thread": 1}, TypeError, "run_in_thread must be a bool"),
    ],
)
def test_single_task_rejects_bad_options(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        single_task(**options)


@pytest.mark.parametrize(
    ("min_size", "max_size", "max_wait"), [(1, 2, 0.0), (3, 10, 0.05), (1, 100, None), (4, 4, None)]
)
def test_batch_task_accepts_max_wait_where_it_can_take_effect(
    min_size: int, max_size: int, max_wait: float | None
) -> None:
    task = batch_task(min_size=min_size, max_size=max_size, max_wait=max_wait)(work)
    assert (task.min_size, task.max_size, task.max_wait) == (min_size, max_size, max_wait)


async def a_coroutine_function(x: int) -> int:
    return x


async def an_async_generator_function(x: int) -> Any:
    yield x


class AsyncCallable:
    async def __call__(self, x: int) -> int:
        return x


@pytest.mark.parametrize("option", ["run_in_thread=True", 'executor="thread"'])
@pytest.mark.parametrize(
    ("func", "kind"),
    [
        (a_coroutine_function, "async def"),
        (an_async_generator_function, "an async generator function"),
        (AsyncCallable(), "async def"),
    ],
)
@pytest.mark.parametrize("decorator", ["single_task", "batch_task"])
def test_threads_refuse_an_async_function_when_the_task_is_defined(
    option: str, func: Any, kind: str, decorator: str
) -> None:
    options: dict[str, Any] = (
        {"run_in_thread": True} if option == "run_in_thread=True" else {"executor": "thread"}
    )
    if decorator == "batch_task":
        options["max_size"] = 2
    make = single_task if decorator == "single_task" else batch_task
    refused = f"{option} runs sync functions only, and this one is {kind}"
    with pytest.raises(TypeError, match=refused):
        make(**options)(func)


@pytest.mark.parametrize("options", [{"run_in_thread": True}, {"executor": "thread"}])
def test_threads_take_sync_functions_and_generators(options: dict[str, Any]) -> None:
    def generate(x: int) -> Any:
        yield x

    assert single_task(**options)(work).run_in_thread
    assert single_task(**options)(generate).run_in_thread


def test_bare_batch_task_decorator_is_an_error() -> None:
    with pytest.raises(TypeError, match="parentheses"):
        batch_task(work)  # type: ignore[arg-type]


def test_single_task_needs_a_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        SingleTask(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        BatchTask("nope")  # type: ignore[arg-type]


def test_piping_something_that_is_not_a_task_is_an_error() -> None:
    task = single_task(work)
    with pytest.raises(TypeError, match="only conveyor tasks and pipelines can be piped"):
        task | work  # type: ignore[operator]
    with pytest.raises(TypeError, match="only conveyor tasks and pipelines can be piped"):
        (task | task) | 3  # type: ignore[operator]
    with pytest.raises(TypeError, match="only conveyor tasks and pipelines can be piped"):
        Pipeline().add(work)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["fast", "", None, "ORDERED"])
def test_unknown_execution_mode_is_an_error(mode: Any) -> None:
    task = single_task(work)
    with pytest.raises(ValueError, match="execution_mode"):
        task.with_execution_mode(mode)
    with pytest.raises(ValueError, match="execution_mode"):
        PipelineContext(execution_mode=mode)
    with pytest.raises(ValueError, match="execution_mode"):
        task.with_context(execution_mode=mode)


@pytest.mark.parametrize("value", [0, -1, 2.0, True])
def test_bad_max_parallelism_is_an_error(value: Any) -> None:
    with pytest.raises(ValueError, match="max_parallelism"):
        PipelineContext(max_parallelism=value)


def test_retry_config_validates_its_fields() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryConfig(max_attempts=0)
    with pytest.raises(ValueError, match="backoff_multiplier"):
        RetryConfig(backoff_multiplier=0.5)
    with pytest.raises(TypeError, match="retry_on"):
        RetryConfig(retry_on=(ValueError, "nope"))  # type: ignore[arg-type]


def test_pipeline_context_must_be_a_pipeline_context() -> None:
    with pytest.raises(TypeError, match="PipelineContext"):
        Pipeline(context={"execution_mode": "ordered"})  # type: ignore[arg-type]


def test_empty_pipeline_without_data_is_an_error() -> None:
    with pytest.raises(TypeError, match="needs data"):
        Pipeline()()

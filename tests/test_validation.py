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
    ],
)
def test_single_task_rejects_bad_options(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        single_task(**options)


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

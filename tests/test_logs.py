"""Every log record conveyor writes says where: the run id and the stage."""

from __future__ import annotations

import logging

import pytest

from conveyor import LoggingErrorHandler, batch_task, get_current_context, single_task

pytestmark = pytest.mark.anyio


async def test_a_stage_warning_carries_the_run_id_and_stage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    run_ids: list[str] = []

    @single_task
    def note_run(x: int) -> int:
        context = get_current_context()
        assert context is not None
        run_ids.append(context.pipeline_id)
        return x

    @batch_task(max_size=4, min_size=4)
    def fours(batch: list[int]) -> int:
        return sum(batch)

    with caplog.at_level(logging.WARNING, logger="conveyor"):
        assert await (note_run | fours)(range(6)).collect() == [6]

    [record] = caplog.records
    run_id = run_ids[0]
    assert (record.conveyor_run_id, record.conveyor_stage) == (run_id, "fours")  # type: ignore[attr-defined]
    assert record.getMessage().endswith(f" [conveyor run {run_id} stage 'fours']")
    assert "dropped the last 2 item(s)" in record.getMessage()


async def test_the_logging_error_handler_says_which_run_and_stage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @single_task(error_handler=LoggingErrorHandler(), task_name="50% done")
    def fail(x: int) -> int:
        raise ValueError(x)

    with caplog.at_level(logging.ERROR):
        stream = fail([7])
        assert await stream.collect() == []

    [record] = caplog.records
    run_id = record.conveyor_run_id  # type: ignore[attr-defined]
    assert isinstance(run_id, str)
    assert len(run_id) == 36
    assert record.conveyor_stage == "50% done"  # type: ignore[attr-defined]
    assert record.getMessage() == (
        f"Error in 50% done (attempt 1): 7 [conveyor run {run_id} stage '50% done']"
    )


async def test_two_runs_log_different_run_ids(caplog: pytest.LogCaptureFixture) -> None:
    @batch_task(max_size=2, min_size=2)
    def pairs(batch: list[int]) -> int:
        return sum(batch)

    with caplog.at_level(logging.WARNING, logger="conveyor"):
        await pairs([1]).collect()
        await pairs([1]).collect()
    ids = {record.conveyor_run_id for record in caplog.records}  # type: ignore[attr-defined]
    assert len(caplog.records) == 2
    assert len(ids) == 2

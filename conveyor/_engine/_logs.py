"""Where a log record comes from: the run id and the stage name.

Every record conveyor writes carries ``conveyor_run_id`` and ``conveyor_stage``
as attributes (``extra`` fields, for structured logging and filters) and in
its message, as a `` [conveyor run <id> stage '<name>']`` suffix (after the
original text, which stays as it was), so that a service's logs can be
filtered by run. Both come from context variables:
the run's context (set for every task of a run) and the stage, set by
:func:`run_as_stage` in each stage's task (worker tasks inherit it).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

from ._runvars import current_run_context

__all__ = ["RUN_ID", "STAGE", "current_stage", "log_fields", "run_as_stage", "where"]

RUN_ID = "conveyor_run_id"
STAGE = "conveyor_stage"

#: The name of the stage whose task is running, or None outside stages.
current_stage: ContextVar[str | None] = ContextVar("conveyor_stage", default=None)


async def run_as_stage(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Run a stage's main coroutine with ``current_stage`` set to ``name``."""
    current_stage.set(name)
    await run()


def log_fields(stage: str | None = None) -> dict[str, str | None]:
    """The ``extra`` fields of a record written now (``stage`` overrides the task's)."""
    context = current_run_context.get()
    return {
        RUN_ID: getattr(context, "pipeline_id", None),
        STAGE: stage if stage is not None else current_stage.get(),
    }


def where(fields: dict[str, str | None]) -> str:
    """The message suffix for ``fields``: `` [conveyor run <id> stage '<name>']``."""
    run_id, stage = fields[RUN_ID], fields[STAGE]
    if run_id is None and stage is None:
        return ""
    place = f"run {run_id}" if run_id is not None else "run ?"
    if stage is not None:
        place += f" stage {stage!r}"
    return f" [conveyor {place}]"


class _Where(logging.Filter):
    """Adds the fields and the suffix to records of the ``conveyor`` logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, RUN_ID):  # not already given as ``extra``
            fields = log_fields()
            record.__dict__.update(fields)
            if isinstance(record.msg, str):
                suffix = where(fields)
                # With args the message is a %-format: a stage named "50%" must stay text.
                record.msg += suffix.replace("%", "%%") if record.args else suffix
        return True


_FILTER = _Where()
logging.getLogger("conveyor").addFilter(_FILTER)

"""conveyor's own exception classes.

Errors raised by user code always reach the program as themselves (see
``docs/errors.md``); these classes are for what conveyor itself has to say.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BatchRemainderError", "ConveyorError"]


class ConveyorError(Exception):
    """Base class of the exceptions conveyor itself raises or records."""


class BatchRemainderError(ConveyorError):
    """The end of the input left a batch stage fewer than ``min_size`` values.

    Those values were never passed to the batch function (the rule of
    conveyor-streaming 1.2, which conveyor keeps). conveyor does not raise
    this: it logs a warning and records it in the run's ``failures`` as the
    ``exception`` of a :class:`~conveyor.Failure` whose ``item`` is the same
    list of values and whose ``attempts`` is 0 (never called). See
    ``docs/errors.md`` for how to process the remainder anyway.

    Attributes:
        values: the values left over, in the order the stage received them.
        min_size: the stage's ``min_size``.
        task_name: the batch stage's name.
    """

    def __init__(self, values: list[Any], min_size: int, task_name: str) -> None:
        super().__init__(
            f"batch task {task_name!r} left {len(values)} value(s) unprocessed at the end "
            f"of the input: fewer than min_size={min_size}"
        )
        self.values = values
        self.min_size = min_size
        self.task_name = task_name

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.values, self.min_size, self.task_name)

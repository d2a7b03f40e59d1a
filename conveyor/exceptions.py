"""conveyor's own exception classes.

Errors raised by user code always reach the program as themselves (see
``docs/errors.md``); these classes are for what conveyor itself has to say.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BatchRemainderError", "ConveyorError", "RemoteError", "RemoteTraceback"]


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


class RemoteError(ConveyorError):
    """A call in a worker process or on a cluster raised an exception that
    cannot be pickled back; the message names its type and text, and the
    remote traceback is attached as a note (see ``docs/scaling.md``)."""


class RemoteTraceback(ConveyorError):
    """The traceback text of a call that failed in a worker process or on a
    cluster: the ``__cause__`` of the exception you get, so Python prints it
    under "The above exception was the direct cause of..." (as
    ``concurrent.futures`` does). ``text`` holds it."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f"\n{self.text.rstrip()}"

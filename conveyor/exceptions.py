"""conveyor's own exception classes.

Errors raised by user code always reach the program as themselves (see
``docs/errors.md``); these classes are for what conveyor itself has to say.
"""

from __future__ import annotations

__all__ = ["ConveyorError", "RemoteError"]


class ConveyorError(Exception):
    """Base class of the exceptions conveyor itself raises or records."""


class RemoteError(ConveyorError):
    """A call in a worker process or on a cluster raised an exception that
    cannot be pickled back; the message names its type and text, and the
    remote traceback is attached as a note (see ``docs/scaling.md``)."""

"""conveyor's own exception classes.

Errors raised by user code always reach the program as themselves (see
``docs/errors.md``); these classes are for what conveyor itself has to say.
"""

from __future__ import annotations

__all__ = ["ConveyorError"]


class ConveyorError(Exception):
    """Base class of the exceptions conveyor itself raises or records."""

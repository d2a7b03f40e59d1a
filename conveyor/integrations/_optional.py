"""Import an optional library on first use, or say which extra installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]


def require(module: str, extra: str) -> ModuleType:
    """``import module``; an ImportError naming ``conveyor[extra]`` if it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{module} is needed for this conveyor feature: pip install 'conveyor[{extra}]'"
        ) from exc

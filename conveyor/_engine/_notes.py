"""Attach context to a user's exception without changing its type."""

from __future__ import annotations

import reprlib
import sys

__all__ = ["add_note", "describe_item"]

_short = reprlib.Repr()
_short.maxstring = 80
_short.maxother = 80
_short.maxlist = 8
_short.maxdict = 8
_short.maxtuple = 8
_short.maxlevel = 3


def describe_item(item: object) -> str:
    """A short, safe ``repr`` of an item for messages."""
    try:
        return _short.repr(item)
    except Exception:  # a broken __repr__ must not hide the real error
        return f"<{type(item).__name__} object>"


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)``, also on Python 3.10 (shown by exceptiongroup)."""
    if sys.version_info >= (3, 11):
        exc.add_note(note)
    else:  # pragma: no cover - exercised on 3.10 only
        notes = getattr(exc, "__notes__", None)
        if not isinstance(notes, list):
            notes = []
            try:
                exc.__notes__ = notes  # type: ignore[attr-defined]
            except AttributeError:
                return
        notes.append(note)

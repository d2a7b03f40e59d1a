"""Attach context to a user's exception without changing its type.

Every note conveyor adds starts with :data:`PREFIX`. It also marks the
exception as a *value* that user code raised and conveyor passed on: the
error boundary never takes apart an exception group that carries it (see
``_errors``). The note remembers the exception it was added to: trio's
cancel scopes copy every exception group they filter (``split()``), notes
included, and the boundary uses the note to give the user the original
object back.
"""

from __future__ import annotations

import reprlib
import sys

__all__ = ["PREFIX", "add_note", "describe_item", "has_note", "noted_original"]

#: How every note of conveyor's begins.
PREFIX = "conveyor: "

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


class _Note(str):
    """A note of conveyor's, which knows the exception it was first added to."""

    owner: BaseException


def has_note(exc: BaseException) -> bool:
    """True if conveyor has noted ``exc`` (it is a user's exception)."""
    notes = getattr(exc, "__notes__", None)
    if not isinstance(notes, list):
        return False
    return any(isinstance(note, str) and note.startswith(PREFIX) for note in notes)


def noted_original(exc: BaseException) -> BaseException | None:
    """The exception conveyor noted, if ``exc`` is it or a copy of it (else None)."""
    for note in getattr(exc, "__notes__", None) or ():
        if isinstance(note, _Note):
            return note.owner
    return None


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)``, also on Python 3.10 (shown by exceptiongroup).

    Conveyor notes an exception once: if ``exc`` has a note of conveyor's
    already (it came this way before, say raised again by a later retry or
    stage), nothing is added.
    """
    assert note.startswith(PREFIX)
    if has_note(exc):
        return
    note = _Note(note)
    note.owner = exc
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

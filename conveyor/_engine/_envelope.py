"""What travels between stages: chunks of numbered entries.

Every value in flight has a *position*. An input item has the position
``(seq,)``; the values one call expands a value at position ``p`` into have
the positions ``p + (0,)``, ``p + (1,)``, ... . Positions sort in release
order (ordered mode), so an item's values stay together and in their own
order however deeply expansions nest across stages.

A :class:`Chunk` carries the entries of consecutive positions under one
*node*: ``path`` names the node (``()`` for the input items, ``p`` for the
values that position ``p`` expanded into) and ``seq`` is the index of its
first entry there. An *entry* is a plain value (the common case: no wrapper,
no allocation) or :data:`EMPTY`, the place of a dropped value, which keeps
its place so that the ordered output can move past it.

An input item's window token travels with it (``weight``): one per entry of
the items' node, and one on the *closing* chunk (``end=True``) of an item's
own expansion. Deeper values are counted by the expansion that made them
(see ``_window``), so their chunks weigh nothing.

Stages rewrite entries in place when every call of a chunk finishes at once,
and split a chunk into pieces when a call has to wait or expands.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

__all__ = ["EMPTY", "Chunk", "Many", "add_values", "entry_from_list", "values_of"]


class Many:
    """An entry of zero or several values that arrived whole; private, so never a user's value.

    Stages only ever pass :data:`EMPTY` on; the release step and batch stages
    also accept a ``Many`` of values (from a producer that cannot stream).
    """

    __slots__ = ("values",)

    def __init__(self, values: Sequence[Any]) -> None:
        self.values = values

    def __repr__(self) -> str:
        return f"Many({self.values!r})"


#: The entry of a dropped value.
EMPTY = Many(())


def entry_from_list(values: list[Any]) -> Any:
    """The entry for values that arrived whole."""
    if len(values) == 1:
        return values[0]
    return Many(values) if values else EMPTY


def values_of(entry: Any) -> Sequence[Any]:
    """The values an entry stands for."""
    return entry.values if type(entry) is Many else (entry,)


class Chunk:
    """Entries ``seq``, ``seq + 1``, ... of the node ``path``, holding ``weight`` tokens.

    ``many`` is True when some entry may be a :class:`Many` (in practice
    :data:`EMPTY`), so that readers of plain chunks can skip the per-entry
    check. ``end`` is True when the node ends after this chunk's entries (never
    for the input items' node, which ends with the stream). A chunk has one
    owner at a time, which may rewrite its entries in place.
    """

    __slots__ = ("end", "entries", "many", "path", "seq", "weight")

    def __init__(
        self,
        seq: int,
        entries: list[Any],
        weight: int,
        many: bool = False,
        path: tuple[int, ...] = (),
        end: bool = False,
    ) -> None:
        self.seq = seq
        self.entries = entries
        self.weight = weight  # input items' tokens: see the module docstring
        self.many = many
        self.path = path
        self.end = end

    def __repr__(self) -> str:
        where = f"path={self.path}, " if self.path else ""
        end = ", end" if self.end else ""
        return f"Chunk({where}seq={self.seq}, entries={self.entries!r}, weight={self.weight}{end})"


def add_values(target: list[Any] | deque[Any], chunk: Chunk) -> None:
    """Append the values of every entry of ``chunk`` to ``target``, in order."""
    if not chunk.many:
        target.extend(chunk.entries)
        return
    for entry in chunk.entries:
        if type(entry) is Many:
            target.extend(entry.values)
        else:
            target.append(entry)

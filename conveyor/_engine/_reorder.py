"""The reorder step: envelopes back into input order.

Used in ordered mode in front of the consumer and in front of every batch
stage. It holds envelopes that arrived early until everything before them
has arrived; the admission window bounds how many that can be.
"""

from __future__ import annotations

from ._envelope import Chunk

__all__ = ["Reorder"]


class Reorder:
    """Releases chunks in ``seq`` order; a chunk covers ``len(entries)`` numbers."""

    __slots__ = ("_held", "_next")

    def __init__(self) -> None:
        self._next = 0
        self._held: dict[int, Chunk] = {}  # {seq: chunk that arrived early}

    def __len__(self) -> int:
        """How many chunks are held back."""
        return len(self._held)

    def push(self, chunk: Chunk) -> list[Chunk]:
        """Take a chunk in any order; return the chunks now due, in order."""
        if chunk.seq != self._next:
            assert chunk.seq > self._next, "a chunk arrived twice"
            self._held[chunk.seq] = chunk
            return []
        due = [chunk]
        self._next += len(chunk.entries)
        held = self._held
        while held and self._next in held:
            chunk = held.pop(self._next)
            due.append(chunk)
            self._next += len(chunk.entries)
        return due

"""The reorder step: envelopes back into input order.

Used in ordered mode in front of the consumer and in front of every batch
stage. It holds envelopes that arrived early until everything before them
has arrived; the admission window bounds how many that can be.
"""

from __future__ import annotations

from ._envelope import Chunk, Envelope

__all__ = ["Reorder"]


class Reorder:
    """Releases envelopes in ``seq`` order: 0, 1, 2, ..."""

    __slots__ = ("_held", "_next")

    def __init__(self) -> None:
        self._next = 0
        self._held: dict[int, Envelope] = {}  # {seq: envelope that arrived early}

    def __len__(self) -> int:
        """How many envelopes are held back."""
        return len(self._held)

    def push(self, chunk: Chunk) -> Chunk:
        """Take a chunk in any order; return the envelopes now due, in order."""
        held = self._held
        due: Chunk = []
        for env in chunk:
            if env.seq == self._next:
                due.append(env)
                self._next += 1
                if held:
                    while self._next in held:
                        due.append(held.pop(self._next))
                        self._next += 1
            else:
                assert env.seq > self._next, "an envelope arrived twice"
                held[env.seq] = env
        return due

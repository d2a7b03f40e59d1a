"""The reorder step: chunks back into release order.

Used in ordered mode in front of the consumer and in front of every batch
stage. Positions form a tree (see ``_envelope``): the input items are the
children of the root node, and the values a call expands a value into are the
children of that value's node. The step releases chunks in depth-first
order: it holds a chunk that arrived early until everything before it has
been released, and it releases the first values of an expansion while the
expansion is still running (a node is left once its closing chunk has said
how many children it has and all of them are out).

The admission window and the expansions' allowances bound how much it can
hold (see ``_window``).
"""

from __future__ import annotations

from typing import Any

from ._envelope import Chunk

__all__ = ["Completion", "Reorder"]


class _Node:
    """An open node: its children are released in order from ``next`` on."""

    __slots__ = ("end", "held", "next", "parent", "path", "tail")

    def __init__(self, path: tuple[int, ...], parent: _Node | None) -> None:
        self.path = path
        self.parent = parent
        self.next = 0  # the index of the next child to release
        self.end: int | None = None  # how many children, once the closing chunk came
        # {index: a chunk that arrived early, or the open node of an expanded child}
        self.held: dict[int, Chunk | _Node] = {}
        #: A closing chunk without entries: due once every child is out.
        self.tail: Chunk | None = None


class Reorder:
    """Releases chunks in position order; a chunk covers ``len(entries)`` positions."""

    __slots__ = ("_cursor", "_nodes", "held_values")

    def __init__(self) -> None:
        root = _Node((), None)
        self._cursor = root  # the deepest open node on the release frontier
        self._nodes: dict[tuple[int, ...], _Node] = {(): root}  # {path: open node}
        #: Values that arrived and wait for an earlier one.
        self.held_values = 0

    def __len__(self) -> int:
        """How many values are held back."""
        return self.held_values

    def push(self, chunk: Chunk) -> list[Chunk]:
        """Take a chunk in any order; return the chunks now due, in order.

        A closing chunk without entries is due once every child of its node
        is out: it carries the window token of the item (or value) that
        expanded, which must not come back while any of its values is held.
        """
        cursor = self._cursor
        entries = chunk.entries
        if chunk.seq == cursor.next and entries and chunk.path == cursor.path:
            # The common case: the chunk the release is waiting for.
            cursor.next += len(entries)
            due = [chunk]
            if chunk.end:
                cursor.end = cursor.next
            if cursor.held or cursor.end is not None:
                self._drain(due)
            return due
        node = self._node(chunk.path)
        due = []
        if chunk.end:
            node.end = chunk.seq + len(entries)
        if entries:
            assert chunk.seq >= node.next, "a chunk arrived twice"
            assert chunk.seq not in node.held, "a chunk arrived twice"
            node.held[chunk.seq] = chunk
            self.held_values += len(entries)
        elif chunk.end and node.parent is not None:
            assert node.tail is None, "a node closed twice"
            node.tail = chunk  # (see _drain)
        else:
            due.append(chunk)
        self._drain(due)
        return due

    def waits_for(self, path: tuple[int, ...]) -> bool:
        """True when everything before position ``path`` has been released: the
        release waits for it, or for the values it expands into."""
        cursor = self._cursor
        frontier = (*cursor.path, cursor.next)
        depth = len(frontier)
        if len(path) <= depth:
            # ``path`` is on the frontier's line: the frontier, or the node it is in.
            return frontier[: len(path)] == path
        # Deeper: the first value of the frontier's first value of ... .
        return path[:depth] == frontier and not any(path[depth:])

    def frontier(self) -> tuple[int, ...]:
        """The position the release waits for (depth-first order is tuple order)."""
        cursor = self._cursor
        return (*cursor.path, cursor.next)

    def is_due(self, chunk: Chunk) -> bool:
        """True when ``chunk`` is what the release waits for now."""
        cursor = self._cursor
        return chunk.seq == cursor.next and chunk.path == cursor.path

    def _node(self, path: tuple[int, ...]) -> _Node:
        node = self._nodes.get(path)
        if node is None:
            parent = self._node(path[:-1])
            node = self._nodes[path] = _Node(path, parent)
            parent.held[path[-1]] = node
        return node

    def _drain(self, due: list[Chunk]) -> None:
        """Release from the frontier on, entering and leaving nodes as they open and end."""
        node = self._cursor
        while True:
            held = node.held.pop(node.next, None)
            if held is None:
                parent = node.parent
                if parent is None or node.end is None or node.next < node.end:
                    break
                del self._nodes[node.path]  # every child is out: the node is done
                if node.tail is not None:
                    due.append(node.tail)
                parent.next += 1
                node = parent
            elif type(held) is _Node:
                node = held
            else:
                assert type(held) is Chunk
                due.append(held)
                self.held_values -= len(held.entries)
                node.next += len(held.entries)
        self._cursor = node


class Completion:
    """As-completed mode's counterpart of :class:`Reorder`, for expansions' chunks.

    Every value is due at once, in any order; only the window token and end
    mark of an expansion's node (carried by its closing chunk) wait until
    every position of the node is out. A stage passes the closing chunk on
    as soon as the node's last call has *started*: given back then, the token
    would count the item as released while its values are still in flight.
    Top-level chunks need none of this: the caller passes them by.
    """

    __slots__ = ("_nodes",)

    def __init__(self) -> None:
        #: {path: [positions out, positions in all (once closed), its closing chunk]}
        self._nodes: dict[tuple[int, ...], list[Any]] = {}

    def push(self, chunk: Chunk) -> list[Chunk]:
        """Take a chunk of an expansion's node; return the chunks due now."""
        path = chunk.path
        nodes = self._nodes
        node = nodes.get(path)
        if node is None:
            node = nodes[path] = [0, None, None]
        count = len(chunk.entries)
        node[0] += count
        due = [chunk] if count else []
        if chunk.end:
            node[1] = chunk.seq + count
            if count:  # the values are due now; the token and end mark wait
                node[2] = Chunk(chunk.seq + count, [], chunk.weight, False, path, True)
                chunk.weight, chunk.end = 0, False
            else:
                node[2] = chunk
        elif not count:
            due.append(chunk)
        while node[1] is not None and node[0] >= node[1]:  # the node is done
            del nodes[path]
            due.append(node[2])
            path = path[:-1]
            if not path:
                break
            node = nodes.get(path)
            if node is None:
                node = nodes[path] = [0, None, None]
            node[0] += 1  # the position that expanded is out
        return due

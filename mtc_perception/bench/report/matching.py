"""Pairing items of several streams (frames, labels, a node's outputs) by header stamp."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class Group:
    """Items of several streams that carry the same header stamp."""

    stamp_ns: int
    items: dict[str, Any]
    complete: bool


class StampMatcher:
    """Pairs items of several streams (``parts``) by header stamp, in whatever order they come.

    :meth:`add` returns the groups it finished: a group is returned as soon as every part has
    arrived (``complete``), or when more than ``max_pending`` groups wait and it is the oldest
    (``complete`` False: some part never came, or came too late). :meth:`flush` returns the rest.
    An item for a part already present in its group replaces it and counts in ``duplicates``.
    """

    def __init__(self, parts: Sequence[str], max_pending: int = 32) -> None:
        if not parts:
            raise ValueError("StampMatcher needs at least one part")
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.parts = tuple(parts)
        self.max_pending = max_pending
        self._pending: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self.duplicates = 0

    def add(self, stamp_ns: int, part: str, item: Any) -> list[Group]:
        if part not in self.parts:
            raise ValueError(f"part {part!r} is not one of {self.parts}")
        items = self._pending.setdefault(int(stamp_ns), {})
        if part in items:
            self.duplicates += 1
        items[part] = item
        done: list[Group] = []
        if len(items) == len(self.parts):
            done.append(Group(int(stamp_ns), self._pending.pop(int(stamp_ns)), True))
        while len(self._pending) > self.max_pending:
            s, its = self._pending.popitem(last=False)
            done.append(Group(s, its, False))
        return done

    def flush(self) -> list[Group]:
        out = [Group(s, its, len(its) == len(self.parts)) for s, its in self._pending.items()]
        self._pending.clear()
        return out

    @property
    def pending(self) -> int:
        return len(self._pending)

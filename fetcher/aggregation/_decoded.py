"""Decoded suffix states of one batch part, kept with the part so warm reads decode none.

A batch part holds, per operation, the suffix state from each hop of its span; a read
uses one per window (the state from the window's start index `j`). The engine keeps a
`DecodedStates` with each cached part and hands it to `GroupAggregator.compute`, which
decodes a state the first time a read needs it and reuses it after. The states are
shared by every read of the part, so a read never merges into one: it merges into
`Operator.detach(state)` (a copy for the operations whose `merge` changes its first
state in place), and the cached state stays the bytes' state.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DecodedStates"]

# Bytes counted per decoded state besides the estimate of the state itself: the dict
# slot, its (operation, j) key tuple and the two ints (sys.getsizeof: ~140).
_ENTRY_BYTES = 144


class DecodedStates:
    """Decoded suffix states of one batch part by (operation index, state index).

    `bytes` is an estimate of the memory the states hold (`Operator.decoded_bytes` of
    each, plus its dict entry), counted by the part cache's byte bound.
    """

    __slots__ = ("bytes", "states")

    def __init__(self) -> None:
        self.states: dict[tuple[int, int], Any] = {}
        self.bytes = 0

    def add(self, key: tuple[int, int], state: Any, size: int) -> None:
        """Keep `state` (the decoded state at `key`), whose estimated size is `size`."""
        self.states[key] = state
        self.bytes += _ENTRY_BYTES + size

    def __len__(self) -> int:
        """The number of states kept."""
        return len(self.states)

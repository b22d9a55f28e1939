"""The sketch operations: approx_unique_count (CPC) and approx_percentile (KLL), whose states
are datasketches' standard serialized forms (readable by its Java, C++ and Go libraries)
behind a CRC-32 that keeps damaged bytes away from the library."""

from __future__ import annotations

import copy
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import datasketches as ds

from fetcher.aggregation._encoding import Reader, value_bytes
from fetcher.aggregation._operator import Operator

T = TypeVar("T")

# Sketch states are version 2: a CRC-32 of the sketch's bytes before them. datasketches'
# deserializers trust their input: a flipped bit in a stored CPC sketch made one allocate
# 8 GB and take a minute, one in a KLL sketch corrupted the heap (the process aborted).
# The checksum keeps damaged bytes from ever reaching them.
SKETCH_FORMAT_VERSION = 2


def _put_sketch(out: bytearray, serialized: bytes) -> None:
    out += zlib.crc32(serialized).to_bytes(4, "little")
    out += serialized


def _deserialize(r: Reader, load: Callable[[bytes], T]) -> T:
    """The checksummed sketch in the rest of the bytes; a checksum that does not match, or
    any failure of the library, is StateDecodeError."""
    crc = int.from_bytes(r.take(4), "little")
    data = r.take(len(r.data) - r.pos)
    if zlib.crc32(data) != crc:
        raise r.fail("a sketch whose checksum does not match (damaged bytes)")
    try:
        return load(data)
    except Exception as exc:  # the library raises IndexError, RuntimeError, ValueError...
        raise r.fail(f"not a sketch ({type(exc).__name__}: {exc!s:.80})") from None


@dataclass(frozen=True, slots=True)
class ApproxUniqueCount(Operator[Any]):
    """The estimated number of distinct values: a CPC sketch of 2**lg_k."""

    lg_k: int = 11

    @property
    def tag(self) -> int:
        """The operation tag: 15."""
        return 15

    @property
    def format_version(self) -> int:
        """Sketch states carry a checksum: version 2."""
        return SKETCH_FORMAT_VERSION

    def empty(self) -> Any:
        """An empty sketch."""
        return ds.cpc_sketch(self.lg_k)

    def _add(self, state: Any, value: Any, ts: int) -> Any:
        # ints and bools as int64, doubles as double, strings as UTF-8: datasketches' own
        # hashing, so other languages reproduce it; any other value (and "", which
        # datasketches ignores) as the hex string of its tagged value bytes.
        if isinstance(value, bool):
            state.update(int(value))
        elif isinstance(value, int | float) or (isinstance(value, str) and value):
            state.update(value)
        else:
            state.update(value_bytes(value).hex())
        return state

    def merge(self, a: Any, b: Any) -> Any:
        """The union of the two sketches."""
        union = ds.cpc_union(self.lg_k)
        union.update(a)
        union.update(b)
        return union.get_result()

    def decoded_bytes(self, encoded: int) -> int:
        """A CPC sketch in memory: its window of 2**lg_k bytes besides its compressed
        bytes' worth of tables (an estimate)."""
        return 256 + (1 << self.lg_k) + 2 * encoded

    def result(self, state: Any) -> int:
        """The estimate, rounded; 0 for an empty window."""
        return 0 if state.is_empty() else round(state.get_estimate())

    def _put(self, out: bytearray, state: Any) -> None:
        _put_sketch(out, state.serialize())

    def _read(self, r: Reader) -> Any:
        sketch = _deserialize(r, ds.cpc_sketch.deserialize)
        if sketch.lg_k != self.lg_k:
            raise r.fail(f"a sketch of lg_k {sketch.lg_k}, expected {self.lg_k}")
        if sketch.is_empty():
            # datasketches 5.2: an empty sketch read back from its bytes estimates infinity
            # after its first update; a new empty sketch is the same state and does not.
            return ds.cpc_sketch(self.lg_k)
        return sketch


@dataclass(frozen=True, slots=True)
class ApproxPercentile(Operator[Any]):
    """Estimated percentiles of a numeric column: a KLL doubles sketch of parameter k."""

    percentiles: tuple[float, ...]
    k: int = 200

    def __post_init__(self) -> None:
        if not self.percentiles or not all(0 <= p <= 1 for p in self.percentiles):
            raise ValueError(f"percentiles must be in [0, 1], got {self.percentiles}")

    @property
    def tag(self) -> int:
        """The operation tag: 16."""
        return 16

    @property
    def format_version(self) -> int:
        """Sketch states carry a checksum: version 2."""
        return SKETCH_FORMAT_VERSION

    def empty(self) -> Any:
        """An empty sketch."""
        return ds.kll_doubles_sketch(self.k)

    def _add(self, state: Any, value: Any, ts: int) -> Any:
        state.update(float(value))
        return state

    def merge(self, a: Any, b: Any) -> Any:
        """`a` with `b` merged into it."""
        a.merge(b)
        return a

    def detach(self, state: Any) -> Any:
        """A copy of the sketch: `merge` merges into its first sketch in place."""
        return copy.copy(state)

    def decoded_bytes(self, encoded: int) -> int:
        """A KLL sketch in memory: its items (the bulk of its bytes) with room to grow
        (an estimate)."""
        return 256 + 2 * encoded

    def result(self, state: Any) -> list[float] | None:
        """The quantile of each requested percentile, in their order; None if empty."""
        if state.is_empty():
            return None
        return [float(state.get_quantile(p)) for p in self.percentiles]

    def _put(self, out: bytearray, state: Any) -> None:
        _put_sketch(out, state.serialize())

    def _read(self, r: Reader) -> Any:
        sketch = _deserialize(r, ds.kll_doubles_sketch.deserialize)
        if sketch.k != self.k:
            raise r.fail(f"a sketch of k {sketch.k}, expected {self.k}")
        return sketch

"""Byte primitives of the state encodings: header, varints, doubles and tagged values.

A state is `[format version][operation tag][payload]`; docs/aggregations.md gives every
payload byte by byte. Decoding anything malformed raises StateDecodeError, nothing else.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Callable
from typing import Any, TypeVar

FORMAT_VERSION = 1

T = TypeVar("T")

# Value tags: one byte before every encoded value.
_INT, _DOUBLE, _STRING, _BYTES, _FALSE, _TRUE, _LIST = 1, 2, 3, 4, 5, 6, 7
_DOUBLE_FMT = struct.Struct("<d")
_MAX_DEPTH = 8


class StateDecodeError(ValueError):
    """Bytes that are not a valid aggregation state of the expected operation."""


def is_null(value: object) -> bool:
    """Whether an input value is skipped as null: None or a float NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def put_uvarint(out: bytearray, n: int) -> None:
    """Append the unsigned LEB128 varint of `n` (>= 0, any size)."""
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def put_svarint(out: bytearray, n: int) -> None:
    """Append the zigzag varint of a signed `n` (any size)."""
    put_uvarint(out, n * 2 if n >= 0 else -n * 2 - 1)


def put_double(out: bytearray, x: float) -> None:
    """Append an IEEE 754 double, little-endian."""
    out += _DOUBLE_FMT.pack(x)


def put_bytes(out: bytearray, data: bytes) -> None:
    """Append a varint length and the bytes."""
    put_uvarint(out, len(data))
    out += data


def put_value(out: bytearray, value: object) -> None:
    """Append a tagged value: bool, int, float, str, bytes or a list/tuple of these."""
    if value is True or value is False:
        out.append(_TRUE if value else _FALSE)
    elif isinstance(value, int):
        out.append(_INT)
        put_svarint(out, value)
    elif isinstance(value, float):
        out.append(_DOUBLE)
        put_double(out, value)
    elif isinstance(value, str):
        out.append(_STRING)
        put_bytes(out, value.encode())
    elif isinstance(value, bytes):
        out.append(_BYTES)
        put_bytes(out, value)
    elif isinstance(value, list | tuple):
        out.append(_LIST)
        put_uvarint(out, len(value))
        for item in value:
            put_value(out, item)
    else:
        raise TypeError(f"cannot aggregate a {type(value).__name__} value")


def value_bytes(value: object) -> bytes:
    """The tagged encoding of one value (also its deterministic tie-break key)."""
    if type(value) is float:
        return _DOUBLE_TAG + _DOUBLE_FMT.pack(value)
    if type(value) is str:
        return _string_bytes(value)
    out = bytearray()
    put_value(out, value)
    return bytes(out)


_DOUBLE_TAG = bytes((_DOUBLE,))


@functools.lru_cache(maxsize=4096)
def _string_bytes(value: str) -> bytes:
    # Equal strings encode to equal bytes, so a cache keyed by the string is exact (the
    # same is not true of floats: 0.0 == -0.0). Columns of strings repeat their values.
    out = bytearray()
    put_value(out, value)
    return bytes(out)


class Reader:
    """Reads the primitives back from a state's bytes; every failure is StateDecodeError."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def fail(self, why: str) -> StateDecodeError:
        """The error for malformed bytes at the current position."""
        return StateDecodeError(f"aggregation state: {why} at byte {self.pos} of {len(self.data)}")

    def at_end(self) -> bool:
        """Whether every byte has been read."""
        return self.pos >= len(self.data)

    def end(self) -> None:
        """Fail if bytes are left over."""
        if not self.at_end():
            raise self.fail("trailing bytes")

    def byte(self) -> int:
        """One byte."""
        if self.pos >= len(self.data):
            raise self.fail("truncated")
        self.pos += 1
        return self.data[self.pos - 1]

    def take(self, n: int) -> bytes:
        """Exactly `n` bytes."""
        if n > len(self.data) - self.pos:
            raise self.fail(f"truncated (needs {n} bytes)")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def uvarint(self) -> int:
        """An unsigned varint in its shortest form."""
        data, pos = self.data, self.pos
        if pos < len(data) and data[pos] < 0x80:  # one byte: most counts and lengths
            self.pos = pos + 1
            return data[pos]
        n = shift = 0
        size = len(data)
        while True:
            if pos >= size:
                self.pos = pos
                raise self.fail("truncated")
            b = data[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                self.pos = pos
                if b == 0 and shift > 7:
                    raise self.fail("varint not in its shortest form")
                return n
            if shift > 7 * 1024:
                self.pos = pos
                raise self.fail("varint too long")

    def svarint(self) -> int:
        """A zigzag varint."""
        z = self.uvarint()
        return z >> 1 if not z & 1 else -(z >> 1) - 1

    def double(self) -> float:
        """A little-endian double."""
        x: float = _DOUBLE_FMT.unpack(self.take(8))[0]
        return x

    def blob(self) -> bytes:
        """A varint length and that many bytes."""
        return self.take(self.uvarint())

    def value(self, depth: int = 0) -> Any:
        """A tagged value (lists come back as lists)."""
        tag = self.byte()
        if tag == _INT:
            return self.svarint()
        if tag == _DOUBLE:
            return self.double()
        if tag == _STRING:
            try:
                return self.blob().decode()
            except UnicodeDecodeError:
                raise self.fail("a string that is not UTF-8") from None
        if tag == _BYTES:
            return self.blob()
        if tag in (_FALSE, _TRUE):
            return tag == _TRUE
        if tag == _LIST and depth < _MAX_DEPTH:
            return [self.value(depth + 1) for _ in range(self.count())]
        raise self.fail(f"unknown value tag {tag}")

    def value_and_bytes(self) -> tuple[Any, bytes]:
        """A tagged value and its bytes (value_bytes of it: the encoding is canonical)."""
        start = self.pos
        value = self.value()
        return value, self.data[start : self.pos]

    def count(self) -> int:
        """A varint item count, bounded by the bytes left (each item takes at least one)."""
        n = self.uvarint()
        if n > len(self.data) - self.pos:
            raise self.fail(f"count {n} exceeds the bytes left")
        return n

    def items(self, read: Callable[[Reader], T]) -> list[T]:
        """A varint count and that many items read by `read`."""
        return [read(self) for _ in range(self.count())]


def header(tag: int, version: int = FORMAT_VERSION) -> bytearray:
    """A new state's bytes: the format version and the operation tag."""
    return bytearray((version, tag))


def open_state(data: bytes, tag: int, version: int = FORMAT_VERSION) -> Reader:
    """A Reader past the header, after checking the version and the operation tag."""
    if type(data) is bytes and len(data) >= 2 and data[0] == version and data[1] == tag:
        r = Reader(data)  # the common case: checked at once, no copy
        r.pos = 2
        return r
    if not isinstance(data, bytes | bytearray | memoryview):
        raise StateDecodeError(f"aggregation state: {type(data).__name__}, not bytes")
    r = Reader(bytes(data))
    got_version = r.byte()
    if got_version != version:
        raise r.fail(f"format version {got_version}, expected {version}")
    got = r.byte()
    if got != tag:
        raise r.fail(f"operation tag {got}, expected {tag}")
    return r

"""Entity key encoding: key column values -> the key bytes a store is addressed by.

The layout is documented in docs/storage-layout.md so that a Spark or Flink job
can write rows the fetcher reads. Columns are encoded in the group's key order:

- int64: 8 bytes, big-endian two's complement
- string: 4-byte big-endian length, then the UTF-8 bytes
- bytes: 4-byte big-endian length, then the bytes
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

from fetcher.types import KeyColumn, KeyType

_INT64 = struct.Struct(">q")
_LEN = struct.Struct(">I")

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

KeyValue = int | str | bytes


class KeyValueError(ValueError):
    """A key value does not fit its column (wrong type or out of range)."""


def _int64(value: KeyValue) -> bytes:
    if type(value) is not int:
        raise KeyValueError(f"expected an int64, got {type(value).__name__}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise KeyValueError(f"{value} is outside the int64 range")
    return _INT64.pack(value)


def _string(value: KeyValue) -> bytes:
    if type(value) is not str:
        raise KeyValueError(f"expected a string, got {type(value).__name__}")
    data = value.encode("utf-8", "surrogatepass")
    return _LEN.pack(len(data)) + data


def _bytes(value: KeyValue) -> bytes:
    if type(value) is not bytes:
        raise KeyValueError(f"expected bytes, got {type(value).__name__}")
    return _LEN.pack(len(value)) + value


_ENCODERS: dict[KeyType, Callable[[KeyValue], bytes]] = {
    KeyType.INT64: _int64,
    KeyType.STRING: _string,
    KeyType.BYTES: _bytes,
}


def key_encoder(columns: Sequence[KeyColumn]) -> Callable[[Sequence[KeyValue]], bytes]:
    """Build, once per group, the function that encodes its key values (in column order)."""
    encoders = tuple(_ENCODERS[c.type] for c in columns)
    if len(encoders) == 1:
        (only,) = encoders

        def encode_one(values: Sequence[KeyValue]) -> bytes:
            return only(values[0])

        return encode_one

    def encode_many(values: Sequence[KeyValue]) -> bytes:
        return b"".join([enc(v) for enc, v in zip(encoders, values, strict=True)])

    return encode_many


def parse_key_text(column: KeyColumn, text: str) -> KeyValue:
    """Parse a key value given as text (CLI arguments, CSV cells) for `column`."""
    if column.type is KeyType.INT64:
        try:
            return int(text)
        except ValueError:
            raise KeyValueError(f"key {column.name!r} expects an int64, got {text!r}") from None
    if column.type is KeyType.BYTES:
        if text.startswith("0x"):
            try:
                return bytes.fromhex(text[2:])
            except ValueError:
                raise KeyValueError(f"key {column.name!r}: {text!r} is not valid hex") from None
        return text.encode("utf-8")
    return text

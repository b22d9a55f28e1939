"""Feast's Redis keys: the serialized entity key (serialization version 3) + the project.

Version 3, all integers little-endian (docs/feast.md): the number of join keys (uint32);
per join key, sorted by name, its type (uint32, always STRING = 2), the length of its
UTF-8 name (uint32) and the name; then per value, in the same order, its Feast value type
(uint32), its length (uint32) and its bytes: int32 as 4 bytes, int64 and unix timestamps
as 8 (signed), strings as UTF-8, bytes as they are.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

from fetcher.codec import KeyValue, KeyValueError
from fetcher.feast._values import VT, value_type_name

_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")

KeyPart = Callable[[KeyValue], bytes]


def _int_part(name: str, value_type: int, packer: struct.Struct, bits: int) -> KeyPart:
    head = _U32.pack(value_type) + _U32.pack(packer.size)
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def part(value: KeyValue) -> bytes:
        if type(value) is not int or not low <= value <= high:
            raise KeyValueError(
                f"key {name!r} ({value_type_name(value_type)}) expects an integer in "
                f"[{low}, {high}], got {value!r:.60}"
            )
        return head + packer.pack(value)

    return part


def _string_part(name: str) -> KeyPart:
    head = _U32.pack(VT.STRING)

    def part(value: KeyValue) -> bytes:
        if not isinstance(value, str):
            raise KeyValueError(f"key {name!r} (STRING) expects a string, got {value!r:.60}")
        data = value.encode()
        return head + _U32.pack(len(data)) + data

    return part


def _bytes_part(name: str) -> KeyPart:
    head = _U32.pack(VT.BYTES)

    def part(value: KeyValue) -> bytes:
        if not isinstance(value, bytes):
            raise KeyValueError(f"key {name!r} (BYTES) expects bytes, got {value!r:.60}")
        return head + _U32.pack(len(value)) + value

    return part


def _part(name: str, value_type: int) -> KeyPart:
    if value_type == VT.STRING:
        return _string_part(name)
    if value_type == VT.BYTES:
        return _bytes_part(name)
    if value_type == VT.INT32:
        return _int_part(name, value_type, _I32, 32)
    if value_type in (VT.INT64, VT.UNIX_TIMESTAMP):
        return _int_part(name, value_type, _I64, 64)
    raise ValueError(f"key {name!r}: Feast cannot serialize a {value_type_name(value_type)} key")


def feast_key_encoder(
    join_keys: Sequence[tuple[str, int]], project: str
) -> Callable[[Sequence[KeyValue]], bytes]:
    """Values of `join_keys` ((name, Feast value type), in the group's key order) -> the
    Redis key Feast wrote that entity's rows under. Built once per distinct key set."""
    if not join_keys:
        raise ValueError("a Feast entity key needs at least one join key")
    order = sorted(range(len(join_keys)), key=lambda i: join_keys[i][0])
    head = _U32.pack(len(join_keys)) + b"".join(
        _U32.pack(VT.STRING) + _U32.pack(len(name.encode())) + name.encode()
        for name in (join_keys[i][0] for i in order)
    )
    tail = project.encode()
    parts = [_part(*join_keys[i]) for i in order]
    if len(parts) == 1:
        (only,) = parts

        def encode_one(values: Sequence[KeyValue]) -> bytes:
            return head + only(values[0]) + tail

        return encode_one
    ordered = [(i, parts[n]) for n, i in enumerate(order)]

    def encode_many(values: Sequence[KeyValue]) -> bytes:
        if len(values) != len(ordered):
            raise KeyValueError(f"expected {len(ordered)} key values, got {len(values)}")
        return head + b"".join([part(values[i]) for i, part in ordered]) + tail

    return encode_many

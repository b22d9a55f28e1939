"""Bytes in the stores: Avro single-object encoding, the schema registry and writer -> reader
resolution, and the entity key encoding (docs/storage-layout.md).

Imports only the domain types (fetcher.types) and fastavro; everything is built once per schema.
"""

from fetcher.codec._avro import (
    HEADER_SIZE,
    DecodeError,
    DoubleLayout,
    EncodeError,
    GroupCodec,
    SchemaError,
    SchemaRegistry,
    avro_to_features,
    decode_cause,
)
from fetcher.codec._keys import (
    INT64_MAX,
    INT64_MIN,
    KeyValue,
    KeyValueError,
    key_encoder,
    parse_key_text,
)

__all__ = [
    "HEADER_SIZE",
    "INT64_MAX",
    "INT64_MIN",
    "DecodeError",
    "DoubleLayout",
    "EncodeError",
    "GroupCodec",
    "KeyValue",
    "KeyValueError",
    "SchemaError",
    "SchemaRegistry",
    "avro_to_features",
    "decode_cause",
    "key_encoder",
    "parse_key_text",
]

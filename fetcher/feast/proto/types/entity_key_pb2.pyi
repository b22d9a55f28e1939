from fetcher.feast.proto.types import value_pb2 as _value_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EntityKey(_message.Message):
    __slots__ = ("join_keys", "entity_values")
    JOIN_KEYS_FIELD_NUMBER: _ClassVar[int]
    ENTITY_VALUES_FIELD_NUMBER: _ClassVar[int]
    join_keys: _containers.RepeatedScalarFieldContainer[str]
    entity_values: _containers.RepeatedCompositeFieldContainer[_value_pb2.Value]
    def __init__(self, join_keys: _Optional[_Iterable[str]] = ..., entity_values: _Optional[_Iterable[_Union[_value_pb2.Value, _Mapping]]] = ...) -> None: ...

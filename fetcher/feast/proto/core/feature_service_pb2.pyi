import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from fetcher.feast.proto.core import feature_view_projection_pb2 as _feature_view_projection_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeatureService(_message.Message):
    __slots__ = ("spec", "meta")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    spec: FeatureServiceSpec
    meta: FeatureServiceMeta
    def __init__(self, spec: _Optional[_Union[FeatureServiceSpec, _Mapping]] = ..., meta: _Optional[_Union[FeatureServiceMeta, _Mapping]] = ...) -> None: ...

class FeatureServiceSpec(_message.Message):
    __slots__ = ("name", "project", "features", "tags", "description", "owner")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    name: str
    project: str
    features: _containers.RepeatedCompositeFieldContainer[_feature_view_projection_pb2.FeatureViewProjection]
    tags: _containers.ScalarMap[str, str]
    description: str
    owner: str
    def __init__(self, name: _Optional[str] = ..., project: _Optional[str] = ..., features: _Optional[_Iterable[_Union[_feature_view_projection_pb2.FeatureViewProjection, _Mapping]]] = ..., tags: _Optional[_Mapping[str, str]] = ..., description: _Optional[str] = ..., owner: _Optional[str] = ...) -> None: ...

class FeatureServiceMeta(_message.Message):
    __slots__ = ("created_timestamp", "last_updated_timestamp")
    CREATED_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    LAST_UPDATED_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    created_timestamp: _timestamp_pb2.Timestamp
    last_updated_timestamp: _timestamp_pb2.Timestamp
    def __init__(self, created_timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_updated_timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from fetcher.feast.proto.core import feature_pb2 as _feature_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeatureView(_message.Message):
    __slots__ = ("spec", "meta")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    spec: FeatureViewSpec
    meta: FeatureViewMeta
    def __init__(self, spec: _Optional[_Union[FeatureViewSpec, _Mapping]] = ..., meta: _Optional[_Union[FeatureViewMeta, _Mapping]] = ...) -> None: ...

class FeatureViewSpec(_message.Message):
    __slots__ = ("name", "project", "entities", "features", "tags", "ttl", "online", "description", "owner", "entity_columns", "offline", "disabled")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    ENTITY_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    name: str
    project: str
    entities: _containers.RepeatedScalarFieldContainer[str]
    features: _containers.RepeatedCompositeFieldContainer[_feature_pb2.FeatureSpecV2]
    tags: _containers.ScalarMap[str, str]
    ttl: _duration_pb2.Duration
    online: bool
    description: str
    owner: str
    entity_columns: _containers.RepeatedCompositeFieldContainer[_feature_pb2.FeatureSpecV2]
    offline: bool
    disabled: bool
    def __init__(self, name: _Optional[str] = ..., project: _Optional[str] = ..., entities: _Optional[_Iterable[str]] = ..., features: _Optional[_Iterable[_Union[_feature_pb2.FeatureSpecV2, _Mapping]]] = ..., tags: _Optional[_Mapping[str, str]] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., online: _Optional[bool] = ..., description: _Optional[str] = ..., owner: _Optional[str] = ..., entity_columns: _Optional[_Iterable[_Union[_feature_pb2.FeatureSpecV2, _Mapping]]] = ..., offline: _Optional[bool] = ..., disabled: _Optional[bool] = ...) -> None: ...

class FeatureViewMeta(_message.Message):
    __slots__ = ("created_timestamp", "last_updated_timestamp", "current_version_number")
    CREATED_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    LAST_UPDATED_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VERSION_NUMBER_FIELD_NUMBER: _ClassVar[int]
    created_timestamp: _timestamp_pb2.Timestamp
    last_updated_timestamp: _timestamp_pb2.Timestamp
    current_version_number: int
    def __init__(self, created_timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_updated_timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., current_version_number: _Optional[int] = ...) -> None: ...

import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from fetcher.feast.proto.core import entity_pb2 as _entity_pb2
from fetcher.feast.proto.core import feature_service_pb2 as _feature_service_pb2
from fetcher.feast.proto.core import feature_view_pb2 as _feature_view_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Registry(_message.Message):
    __slots__ = ("entities", "feature_views", "feature_services", "on_demand_feature_views", "stream_feature_views", "registry_schema_version", "version_id", "last_updated")
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    FEATURE_VIEWS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SERVICES_FIELD_NUMBER: _ClassVar[int]
    ON_DEMAND_FEATURE_VIEWS_FIELD_NUMBER: _ClassVar[int]
    STREAM_FEATURE_VIEWS_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_UPDATED_FIELD_NUMBER: _ClassVar[int]
    entities: _containers.RepeatedCompositeFieldContainer[_entity_pb2.Entity]
    feature_views: _containers.RepeatedCompositeFieldContainer[_feature_view_pb2.FeatureView]
    feature_services: _containers.RepeatedCompositeFieldContainer[_feature_service_pb2.FeatureService]
    on_demand_feature_views: _containers.RepeatedCompositeFieldContainer[OnDemandFeatureView]
    stream_feature_views: _containers.RepeatedCompositeFieldContainer[StreamFeatureView]
    registry_schema_version: str
    version_id: str
    last_updated: _timestamp_pb2.Timestamp
    def __init__(self, entities: _Optional[_Iterable[_Union[_entity_pb2.Entity, _Mapping]]] = ..., feature_views: _Optional[_Iterable[_Union[_feature_view_pb2.FeatureView, _Mapping]]] = ..., feature_services: _Optional[_Iterable[_Union[_feature_service_pb2.FeatureService, _Mapping]]] = ..., on_demand_feature_views: _Optional[_Iterable[_Union[OnDemandFeatureView, _Mapping]]] = ..., stream_feature_views: _Optional[_Iterable[_Union[StreamFeatureView, _Mapping]]] = ..., registry_schema_version: _Optional[str] = ..., version_id: _Optional[str] = ..., last_updated: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class OnDemandFeatureView(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: OnDemandFeatureViewSpec
    def __init__(self, spec: _Optional[_Union[OnDemandFeatureViewSpec, _Mapping]] = ...) -> None: ...

class OnDemandFeatureViewSpec(_message.Message):
    __slots__ = ("name", "project")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    name: str
    project: str
    def __init__(self, name: _Optional[str] = ..., project: _Optional[str] = ...) -> None: ...

class StreamFeatureView(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: StreamFeatureViewSpec
    def __init__(self, spec: _Optional[_Union[StreamFeatureViewSpec, _Mapping]] = ...) -> None: ...

class StreamFeatureViewSpec(_message.Message):
    __slots__ = ("name", "project")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    name: str
    project: str
    def __init__(self, name: _Optional[str] = ..., project: _Optional[str] = ...) -> None: ...

import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeatureType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEATURE_TYPE_UNSPECIFIED: _ClassVar[FeatureType]
    DOUBLE: _ClassVar[FeatureType]
    INT64: _ClassVar[FeatureType]
    STRING: _ClassVar[FeatureType]
    BOOL: _ClassVar[FeatureType]
    BYTES: _ClassVar[FeatureType]
    DOUBLE_LIST: _ClassVar[FeatureType]
    INT64_LIST: _ClassVar[FeatureType]
    STRING_LIST: _ClassVar[FeatureType]
    BOOL_LIST: _ClassVar[FeatureType]
    BYTES_LIST: _ClassVar[FeatureType]

class KeyType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_TYPE_UNSPECIFIED: _ClassVar[KeyType]
    KEY_INT64: _ClassVar[KeyType]
    KEY_STRING: _ClassVar[KeyType]
    KEY_BYTES: _ClassVar[KeyType]

class FeatureStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEATURE_STATUS_UNSPECIFIED: _ClassVar[FeatureStatus]
    PRESENT: _ClassVar[FeatureStatus]
    NOT_FOUND: _ClassVar[FeatureStatus]
    NULL_VALUE: _ClassVar[FeatureStatus]
    OUTSIDE_MAX_AGE: _ClassVar[FeatureStatus]
    ERROR: _ClassVar[FeatureStatus]
FEATURE_TYPE_UNSPECIFIED: FeatureType
DOUBLE: FeatureType
INT64: FeatureType
STRING: FeatureType
BOOL: FeatureType
BYTES: FeatureType
DOUBLE_LIST: FeatureType
INT64_LIST: FeatureType
STRING_LIST: FeatureType
BOOL_LIST: FeatureType
BYTES_LIST: FeatureType
KEY_TYPE_UNSPECIFIED: KeyType
KEY_INT64: KeyType
KEY_STRING: KeyType
KEY_BYTES: KeyType
FEATURE_STATUS_UNSPECIFIED: FeatureStatus
PRESENT: FeatureStatus
NOT_FOUND: FeatureStatus
NULL_VALUE: FeatureStatus
OUTSIDE_MAX_AGE: FeatureStatus
ERROR: FeatureStatus

class Value(_message.Message):
    __slots__ = ("int64_value", "string_value", "bytes_value")
    INT64_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    BYTES_VALUE_FIELD_NUMBER: _ClassVar[int]
    int64_value: int
    string_value: str
    bytes_value: bytes
    def __init__(self, int64_value: _Optional[int] = ..., string_value: _Optional[str] = ..., bytes_value: _Optional[bytes] = ...) -> None: ...

class Entity(_message.Message):
    __slots__ = ("keys", "at", "context")
    class KeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
    class ContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: EventValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[EventValue, _Mapping]] = ...) -> None: ...
    KEYS_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.MessageMap[str, Value]
    at: _timestamp_pb2.Timestamp
    context: _containers.MessageMap[str, EventValue]
    def __init__(self, keys: _Optional[_Mapping[str, Value]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., context: _Optional[_Mapping[str, EventValue]] = ...) -> None: ...

class GetFeaturesRequest(_message.Message):
    __slots__ = ("feature_group", "feature_service", "keys", "at", "context")
    class KeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
    class ContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: EventValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[EventValue, _Mapping]] = ...) -> None: ...
    FEATURE_GROUP_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SERVICE_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    feature_group: str
    feature_service: str
    keys: _containers.MessageMap[str, Value]
    at: _timestamp_pb2.Timestamp
    context: _containers.MessageMap[str, EventValue]
    def __init__(self, feature_group: _Optional[str] = ..., feature_service: _Optional[str] = ..., keys: _Optional[_Mapping[str, Value]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., context: _Optional[_Mapping[str, EventValue]] = ...) -> None: ...

class GetBatchFeaturesRequest(_message.Message):
    __slots__ = ("feature_group", "feature_service", "entities", "at", "context")
    class ContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: EventValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[EventValue, _Mapping]] = ...) -> None: ...
    FEATURE_GROUP_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SERVICE_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    feature_group: str
    feature_service: str
    entities: _containers.RepeatedCompositeFieldContainer[Entity]
    at: _timestamp_pb2.Timestamp
    context: _containers.MessageMap[str, EventValue]
    def __init__(self, feature_group: _Optional[str] = ..., feature_service: _Optional[str] = ..., entities: _Optional[_Iterable[_Union[Entity, _Mapping]]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., context: _Optional[_Mapping[str, EventValue]] = ...) -> None: ...

class ResponseMetadata(_message.Message):
    __slots__ = ("config_version", "feature_names", "feature_types", "groups", "feature_groups")
    CONFIG_VERSION_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    FEATURE_TYPES_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_GROUPS_FIELD_NUMBER: _ClassVar[int]
    config_version: str
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    feature_types: _containers.RepeatedScalarFieldContainer[FeatureType]
    groups: _containers.RepeatedScalarFieldContainer[str]
    feature_groups: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, config_version: _Optional[str] = ..., feature_names: _Optional[_Iterable[str]] = ..., feature_types: _Optional[_Iterable[_Union[FeatureType, str]]] = ..., groups: _Optional[_Iterable[str]] = ..., feature_groups: _Optional[_Iterable[int]] = ...) -> None: ...

class ListValue(_message.Message):
    __slots__ = ("double_values", "int64_values", "string_values", "bool_values", "bytes_values")
    DOUBLE_VALUES_FIELD_NUMBER: _ClassVar[int]
    INT64_VALUES_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUES_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUES_FIELD_NUMBER: _ClassVar[int]
    BYTES_VALUES_FIELD_NUMBER: _ClassVar[int]
    double_values: _containers.RepeatedScalarFieldContainer[float]
    int64_values: _containers.RepeatedScalarFieldContainer[int]
    string_values: _containers.RepeatedScalarFieldContainer[str]
    bool_values: _containers.RepeatedScalarFieldContainer[bool]
    bytes_values: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, double_values: _Optional[_Iterable[float]] = ..., int64_values: _Optional[_Iterable[int]] = ..., string_values: _Optional[_Iterable[str]] = ..., bool_values: _Optional[_Iterable[bool]] = ..., bytes_values: _Optional[_Iterable[bytes]] = ...) -> None: ...

class FeatureVector(_message.Message):
    __slots__ = ("statuses", "double_values", "int64_values", "string_values", "bool_values", "bytes_values", "list_values", "event_timestamps_ms")
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUES_FIELD_NUMBER: _ClassVar[int]
    INT64_VALUES_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUES_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUES_FIELD_NUMBER: _ClassVar[int]
    BYTES_VALUES_FIELD_NUMBER: _ClassVar[int]
    LIST_VALUES_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIMESTAMPS_MS_FIELD_NUMBER: _ClassVar[int]
    statuses: _containers.RepeatedScalarFieldContainer[FeatureStatus]
    double_values: _containers.RepeatedScalarFieldContainer[float]
    int64_values: _containers.RepeatedScalarFieldContainer[int]
    string_values: _containers.RepeatedScalarFieldContainer[str]
    bool_values: _containers.RepeatedScalarFieldContainer[bool]
    bytes_values: _containers.RepeatedScalarFieldContainer[bytes]
    list_values: _containers.RepeatedCompositeFieldContainer[ListValue]
    event_timestamps_ms: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, statuses: _Optional[_Iterable[_Union[FeatureStatus, str]]] = ..., double_values: _Optional[_Iterable[float]] = ..., int64_values: _Optional[_Iterable[int]] = ..., string_values: _Optional[_Iterable[str]] = ..., bool_values: _Optional[_Iterable[bool]] = ..., bytes_values: _Optional[_Iterable[bytes]] = ..., list_values: _Optional[_Iterable[_Union[ListValue, _Mapping]]] = ..., event_timestamps_ms: _Optional[_Iterable[int]] = ...) -> None: ...

class GetFeaturesResponse(_message.Message):
    __slots__ = ("metadata", "vector")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    metadata: ResponseMetadata
    vector: FeatureVector
    def __init__(self, metadata: _Optional[_Union[ResponseMetadata, _Mapping]] = ..., vector: _Optional[_Union[FeatureVector, _Mapping]] = ...) -> None: ...

class GetBatchFeaturesResponse(_message.Message):
    __slots__ = ("metadata", "vectors")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    metadata: ResponseMetadata
    vectors: _containers.RepeatedCompositeFieldContainer[FeatureVector]
    def __init__(self, metadata: _Optional[_Union[ResponseMetadata, _Mapping]] = ..., vectors: _Optional[_Iterable[_Union[FeatureVector, _Mapping]]] = ...) -> None: ...

class ListFeatureGroupsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class KeyColumn(_message.Message):
    __slots__ = ("name", "type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: KeyType
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[KeyType, str]] = ...) -> None: ...

class FeatureInfo(_message.Message):
    __slots__ = ("name", "type", "description", "nullable", "expression")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    NULLABLE_FIELD_NUMBER: _ClassVar[int]
    EXPRESSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: FeatureType
    description: str
    nullable: bool
    expression: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[FeatureType, str]] = ..., description: _Optional[str] = ..., nullable: _Optional[bool] = ..., expression: _Optional[str] = ...) -> None: ...

class ContextInfo(_message.Message):
    __slots__ = ("name", "type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: FeatureType
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[FeatureType, str]] = ...) -> None: ...

class FeatureGroupInfo(_message.Message):
    __slots__ = ("name", "keys", "features", "store", "max_age_seconds", "online", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    keys: _containers.RepeatedCompositeFieldContainer[KeyColumn]
    features: _containers.RepeatedCompositeFieldContainer[FeatureInfo]
    store: str
    max_age_seconds: int
    online: bool
    description: str
    def __init__(self, name: _Optional[str] = ..., keys: _Optional[_Iterable[_Union[KeyColumn, _Mapping]]] = ..., features: _Optional[_Iterable[_Union[FeatureInfo, _Mapping]]] = ..., store: _Optional[str] = ..., max_age_seconds: _Optional[int] = ..., online: _Optional[bool] = ..., description: _Optional[str] = ...) -> None: ...

class FeatureServiceInfo(_message.Message):
    __slots__ = ("name", "keys", "features", "groups", "online", "description", "context")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    name: str
    keys: _containers.RepeatedCompositeFieldContainer[KeyColumn]
    features: _containers.RepeatedCompositeFieldContainer[FeatureInfo]
    groups: _containers.RepeatedScalarFieldContainer[str]
    online: bool
    description: str
    context: _containers.RepeatedCompositeFieldContainer[ContextInfo]
    def __init__(self, name: _Optional[str] = ..., keys: _Optional[_Iterable[_Union[KeyColumn, _Mapping]]] = ..., features: _Optional[_Iterable[_Union[FeatureInfo, _Mapping]]] = ..., groups: _Optional[_Iterable[str]] = ..., online: _Optional[bool] = ..., description: _Optional[str] = ..., context: _Optional[_Iterable[_Union[ContextInfo, _Mapping]]] = ...) -> None: ...

class ListFeatureGroupsResponse(_message.Message):
    __slots__ = ("config_version", "groups", "services")
    CONFIG_VERSION_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    config_version: str
    groups: _containers.RepeatedCompositeFieldContainer[FeatureGroupInfo]
    services: _containers.RepeatedCompositeFieldContainer[FeatureServiceInfo]
    def __init__(self, config_version: _Optional[str] = ..., groups: _Optional[_Iterable[_Union[FeatureGroupInfo, _Mapping]]] = ..., services: _Optional[_Iterable[_Union[FeatureServiceInfo, _Mapping]]] = ...) -> None: ...

class EventValue(_message.Message):
    __slots__ = ("int64_value", "double_value", "string_value", "bool_value", "bytes_value", "list_value")
    INT64_VALUE_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    BYTES_VALUE_FIELD_NUMBER: _ClassVar[int]
    LIST_VALUE_FIELD_NUMBER: _ClassVar[int]
    int64_value: int
    double_value: float
    string_value: str
    bool_value: bool
    bytes_value: bytes
    list_value: ListValue
    def __init__(self, int64_value: _Optional[int] = ..., double_value: _Optional[float] = ..., string_value: _Optional[str] = ..., bool_value: _Optional[bool] = ..., bytes_value: _Optional[bytes] = ..., list_value: _Optional[_Union[ListValue, _Mapping]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("keys", "event_time", "id", "values")
    class KeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: EventValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[EventValue, _Mapping]] = ...) -> None: ...
    KEYS_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.MessageMap[str, Value]
    event_time: _timestamp_pb2.Timestamp
    id: str
    values: _containers.MessageMap[str, EventValue]
    def __init__(self, keys: _Optional[_Mapping[str, Value]] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., id: _Optional[str] = ..., values: _Optional[_Mapping[str, EventValue]] = ...) -> None: ...

class PushEventsRequest(_message.Message):
    __slots__ = ("feature_group", "events")
    FEATURE_GROUP_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    feature_group: str
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, feature_group: _Optional[str] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class PushEventsResponse(_message.Message):
    __slots__ = ("accepted", "late", "late_events")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    LATE_FIELD_NUMBER: _ClassVar[int]
    LATE_EVENTS_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    late: int
    late_events: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, accepted: _Optional[int] = ..., late: _Optional[int] = ..., late_events: _Optional[_Iterable[int]] = ...) -> None: ...

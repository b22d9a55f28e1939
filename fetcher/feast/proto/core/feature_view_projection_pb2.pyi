from fetcher.feast.proto.core import feature_pb2 as _feature_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeatureViewProjection(_message.Message):
    __slots__ = ("feature_view_name", "feature_view_name_alias", "feature_columns", "join_key_map", "version_tag")
    class JoinKeyMapEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FEATURE_VIEW_NAME_FIELD_NUMBER: _ClassVar[int]
    FEATURE_VIEW_NAME_ALIAS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    JOIN_KEY_MAP_FIELD_NUMBER: _ClassVar[int]
    VERSION_TAG_FIELD_NUMBER: _ClassVar[int]
    feature_view_name: str
    feature_view_name_alias: str
    feature_columns: _containers.RepeatedCompositeFieldContainer[_feature_pb2.FeatureSpecV2]
    join_key_map: _containers.ScalarMap[str, str]
    version_tag: int
    def __init__(self, feature_view_name: _Optional[str] = ..., feature_view_name_alias: _Optional[str] = ..., feature_columns: _Optional[_Iterable[_Union[_feature_pb2.FeatureSpecV2, _Mapping]]] = ..., join_key_map: _Optional[_Mapping[str, str]] = ..., version_tag: _Optional[int] = ...) -> None: ...

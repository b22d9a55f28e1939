"""The project's Python client: typed keys in, named feature values out.

Model servers on a hot path can use the stub directly and read the columnar
vectors; this client adds convenience (key typing from the server's own
description, request-time values from Python values, vectors decoded to named values)
for tools, tests and notebooks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from fetcher.types import FeatureType, KeyType, Status
from fetcher.v1 import feature_service_pb2 as pb
from fetcher.v1 import feature_service_pb2_grpc as pb_grpc

KeyInput = int | str | bytes

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_MS = dt.timedelta(milliseconds=1)

_SLOT_FIELD = {
    FeatureType.DOUBLE: "double_values",
    FeatureType.INT64: "int64_values",
    FeatureType.STRING: "string_values",
    FeatureType.BOOL: "bool_values",
    FeatureType.BYTES: "bytes_values",
}
_LIST_FIELD = {
    FeatureType.DOUBLE_LIST: "double_values",
    FeatureType.INT64_LIST: "int64_values",
    FeatureType.STRING_LIST: "string_values",
    FeatureType.BOOL_LIST: "bool_values",
    FeatureType.BYTES_LIST: "bytes_values",
}


@dataclass(frozen=True, slots=True)
class FeatureValue:
    """One feature of one entity, decoded: its value only means something when PRESENT."""

    name: str
    type: FeatureType
    status: Status
    value: Any
    group: str
    event_ms: int


def key_value(value: KeyInput) -> pb.Value:
    """A Python key value as a fetcher.v1.Value (int -> int64, str -> string, bytes -> bytes)."""
    if isinstance(value, bool):
        raise TypeError("a bool is not a valid entity key value")
    if isinstance(value, int):
        return pb.Value(int64_value=value)
    if isinstance(value, str):
        return pb.Value(string_value=value)
    if isinstance(value, bytes):
        return pb.Value(bytes_value=value)
    raise TypeError(f"unsupported key value type {type(value).__name__}")


def event_value(value: Any) -> pb.EventValue:
    """A Python value as a fetcher.v1.EventValue (None: null; lists by their item type).

    Also a request-time value's form: an int goes as int64_value, which the server takes
    for a double too.
    """
    if value is None:
        return pb.EventValue()
    if isinstance(value, bool):
        return pb.EventValue(bool_value=value)
    if isinstance(value, int):
        return pb.EventValue(int64_value=value)
    if isinstance(value, float):
        return pb.EventValue(double_value=value)
    if isinstance(value, str):
        return pb.EventValue(string_value=value)
    if isinstance(value, bytes):
        return pb.EventValue(bytes_value=value)
    if isinstance(value, list | tuple):
        items = list(value)
        field = (
            "bool_values" if all(isinstance(v, bool) for v in items) and items
            else "int64_values" if all(isinstance(v, int) for v in items) and items
            else "double_values" if all(isinstance(v, int | float) for v in items) and items
            else "bytes_values" if all(isinstance(v, bytes) for v in items) and items
            else "string_values"
        )
        return pb.EventValue(list_value=pb.ListValue(**{field: items}))
    raise TypeError(f"unsupported event value type {type(value).__name__}")


def timestamp(at: dt.datetime | int) -> Any:
    """A datetime (aware) or epoch ms as a google.protobuf.Timestamp."""
    from google.protobuf.timestamp_pb2 import Timestamp

    if isinstance(at, dt.datetime):
        if at.tzinfo is None:
            raise ValueError("point-in-time datetimes must be timezone-aware")
        # Integer timedelta arithmetic: at.timestamp() * 1000 is a float product that
        # lands just below the exact millisecond for some times, and int() would then
        # read one millisecond too early (and miss a row written at exactly that time).
        ms = (at - _EPOCH) // _ONE_MS
    else:
        ms = at
    return Timestamp(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def decode_vectors(
    metadata: pb.ResponseMetadata, vectors: Sequence[pb.FeatureVector]
) -> list[dict[str, FeatureValue]]:
    """Columnar vectors -> one {feature name: FeatureValue} per entity, in request order."""
    types = [FeatureType(t) for t in metadata.feature_types]
    groups = list(metadata.groups)
    owners = list(metadata.feature_groups)
    places: list[tuple[str, int]] = []
    counters: dict[str, int] = {}
    for t in types:
        field = "list_values" if t in _LIST_FIELD else _SLOT_FIELD[t]
        places.append((field, counters.get(field, 0)))
        counters[field] = counters.get(field, 0) + 1
    out: list[dict[str, FeatureValue]] = []
    for vector in vectors:
        row: dict[str, FeatureValue] = {}
        for i, name in enumerate(metadata.feature_names):
            field, index = places[i]
            raw = getattr(vector, field)[index]
            value = list(getattr(raw, _LIST_FIELD[types[i]])) if field == "list_values" else raw
            row[name] = FeatureValue(
                name=name,
                type=types[i],
                status=Status(vector.statuses[i]),
                value=value,
                group=groups[owners[i]],
                event_ms=vector.event_timestamps_ms[owners[i]],
            )
        out.append(row)
    return out


class FeatureClient:
    """A blocking client of fetcher.v1.FeatureService."""

    def __init__(self, target: str = "127.0.0.1:50051", *, timeout_s: float = 5.0) -> None:
        self._channel = grpc.insecure_channel(target)
        self._stub = pb_grpc.FeatureServiceStub(self._channel)
        self._timeout = timeout_s

    def __enter__(self) -> FeatureClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    @staticmethod
    def _target(service: str | None, group: str | None) -> dict[str, Any]:
        if service is not None and group is None:
            return {"feature_service": service}
        if group is not None and service is None:
            return {"feature_group": group}
        raise ValueError("give exactly one of service= or group=")

    def get_raw(
        self,
        *,
        keys: Mapping[str, KeyInput],
        service: str | None = None,
        group: str | None = None,
        at: dt.datetime | int | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> pb.GetFeaturesResponse:
        """GetFeatures, returning the proto response; `context`: the request-time values
        (name -> Python value) a service with derivations reads."""
        request = pb.GetFeaturesRequest(
            keys={k: key_value(v) for k, v in keys.items()}, **self._target(service, group)
        )
        if at is not None:
            request.at.CopyFrom(timestamp(at))
        for name, value in (context or {}).items():
            request.context[name].CopyFrom(event_value(value))
        response: pb.GetFeaturesResponse = self._stub.GetFeatures(request, timeout=self._timeout)
        return response

    def get(
        self,
        *,
        keys: Mapping[str, KeyInput],
        service: str | None = None,
        group: str | None = None,
        at: dt.datetime | int | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> dict[str, FeatureValue]:
        """One entity's features by name (derived ones included)."""
        response = self.get_raw(keys=keys, service=service, group=group, at=at, context=context)
        return decode_vectors(response.metadata, [response.vector])[0]

    def get_batch_raw(
        self,
        entities: Sequence[Mapping[str, KeyInput]],
        *,
        service: str | None = None,
        group: str | None = None,
        at: dt.datetime | int | None = None,
        entity_at: Sequence[dt.datetime | int | None] | None = None,
        context: Mapping[str, Any] | None = None,
        entity_context: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> pb.GetBatchFeaturesResponse:
        """GetBatchFeatures, returning the proto response. `context`: request-time values
        for every entity; `entity_context[i]`: entity i's, over `context` name by name."""
        request = pb.GetBatchFeaturesRequest(**self._target(service, group))
        for index, keys in enumerate(entities):
            entity = request.entities.add()
            for name, value in keys.items():
                entity.keys[name].CopyFrom(key_value(value))
            if entity_at is not None and entity_at[index] is not None:
                entity.at.CopyFrom(timestamp(entity_at[index]))  # type: ignore[arg-type]
            own = entity_context[index] if entity_context is not None else None
            for name, item in (own or {}).items():
                entity.context[name].CopyFrom(event_value(item))
        if at is not None:
            request.at.CopyFrom(timestamp(at))
        for name, item in (context or {}).items():
            request.context[name].CopyFrom(event_value(item))
        response: pb.GetBatchFeaturesResponse = self._stub.GetBatchFeatures(
            request, timeout=self._timeout
        )
        return response

    def get_batch(
        self,
        entities: Sequence[Mapping[str, KeyInput]],
        *,
        service: str | None = None,
        group: str | None = None,
        at: dt.datetime | int | None = None,
        entity_at: Sequence[dt.datetime | int | None] | None = None,
        context: Mapping[str, Any] | None = None,
        entity_context: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[dict[str, FeatureValue]]:
        """Many entities' features by name, in request order."""
        response = self.get_batch_raw(
            entities, service=service, group=group, at=at, entity_at=entity_at,
            context=context, entity_context=entity_context,
        )
        return decode_vectors(response.metadata, response.vectors)

    def push(
        self,
        group: str,
        events: Sequence[tuple[Mapping[str, KeyInput], dt.datetime | int, str, Mapping[str, Any]]],
    ) -> pb.PushEventsResponse:
        """PushEvents: (keys, event time, id, values) per event; a retry with the same
        events counts each (event time, id) once."""
        request = pb.PushEventsRequest(feature_group=group)
        for keys, at, event_id, values in events:
            event = request.events.add(id=event_id)
            for name, value in keys.items():
                event.keys[name].CopyFrom(key_value(value))
            event.event_time.CopyFrom(timestamp(at))
            for name, item in values.items():
                event.values[name].CopyFrom(event_value(item))
        response: pb.PushEventsResponse = self._stub.PushEvents(request, timeout=self._timeout)
        return response

    def describe(self, name: str = "") -> pb.ListFeatureGroupsResponse:
        """ListFeatureGroups: everything, or one group or service by name."""
        response: pb.ListFeatureGroupsResponse = self._stub.ListFeatureGroups(
            pb.ListFeatureGroupsRequest(name=name), timeout=self._timeout
        )
        return response

    def context_types(self, service: str) -> dict[str, FeatureType]:
        """The request-time values a service reads, with their types (from the server)."""
        listing = self.describe(service)
        if not listing.services:
            return {}
        return {c.name: FeatureType(c.type) for c in listing.services[0].context}

    def key_types(self, name: str) -> dict[str, KeyType]:
        """The request keys a group or service needs, with their types (from the server)."""
        listing = self.describe(name)
        entries = list(listing.services) + list(listing.groups)
        return {k.name: KeyType(k.type) for k in entries[0].keys}

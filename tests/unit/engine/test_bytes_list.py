"""BYTES_LIST (Feast's bytes lists): a row shaped by the engine carries each list of bytes
in its own ListValue, and the client reads it back beside the other list types."""

from __future__ import annotations

from fetcher.api import VectorView, encode_values
from fetcher.client import decode_vectors
from fetcher.engine._rows import RowShape
from fetcher.types import Feature, FeatureType, Status
from fetcher.v1 import feature_service_pb2 as pb

FEATURES = (
    Feature("blobs", FeatureType.BYTES_LIST, nullable=True),
    Feature("names", FeatureType.STRING_LIST),
    Feature("more_blobs", FeatureType.BYTES_LIST, nullable=True),
)


def test_bytes_lists_round_trip_through_a_row_and_the_client() -> None:
    shape = RowShape(FEATURES, encode_values)
    record = {"blobs": [b"\x00", b"", b"\xff\xfe"], "names": ["a"], "more_blobs": None}
    row = shape.to_row(record, 1_700_000_000_123)
    view = VectorView(row.wire)
    assert view.statuses == [Status.PRESENT, Status.PRESENT, Status.NULL_VALUE]
    assert view.values[5] == [[b"\x00", b"", b"\xff\xfe"], ["a"], []]
    metadata = pb.ResponseMetadata(
        feature_names=[f.name for f in FEATURES],
        feature_types=[int(f.type) for f in FEATURES],
        groups=["g"],
        feature_groups=[0, 0, 0],
    )
    (decoded,) = decode_vectors(metadata, [pb.FeatureVector.FromString(row.wire)])
    assert decoded["blobs"].value == [b"\x00", b"", b"\xff\xfe"]
    assert decoded["blobs"].type is FeatureType.BYTES_LIST
    assert decoded["names"].value == ["a"]
    assert decoded["more_blobs"].status is Status.NULL_VALUE
    assert decoded["more_blobs"].event_ms == 1_700_000_000_123

"""The gRPC service layer: proto requests -> domain requests (INVALID_ARGUMENT on bad input),
engine results -> wire responses, response metadata built once per snapshot, admission.

Imports the engine, catalog, codec and the generated protos; never a store or a cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fetcher.api._admission import Admission, Overloaded
from fetcher.api._served import ServedLog
from fetcher.api._snapshot import Snapshot, build_snapshot
from fetcher.api._wire import VectorView, encode_values, read_columns
from fetcher.lazy import lazy_getattr

if TYPE_CHECKING:
    from fetcher.api._service import FeatureServicer, add_to_server, feature_handlers

# Imported on first use: the service module imports grpc, and a supervisor builds snapshots
# (this package) before it forks its workers, when grpc must not be loaded yet.
_LAZY = {name: "fetcher.api._service" for name in ("FeatureServicer", "add_to_server",
                                                   "feature_handlers")}

__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "Admission",
    "FeatureServicer",
    "Overloaded",
    "ServedLog",
    "Snapshot",
    "VectorView",
    "add_to_server",
    "build_snapshot",
    "encode_values",
    "feature_handlers",
    "read_columns",
]

"""The fetch engine: per-target plans built once per snapshot, fan-out to the stores in
parallel behind the cache tiers, deadlines, breakers, and the merge into feature vectors.

Imports the cache, catalog, codec and kvstores layers; never the api layer or protobuf (the
api layer hands in the encoder of vector values and the reader of derivations' inputs:
`build_plans(..., encode_values, read_columns)`).
"""

from fetcher.engine._derive import ColumnReader, DerivedPlan, Pick
from fetcher.engine._fetch import FetchEngine
from fetcher.engine._merge import EntityVector
from fetcher.engine._plan import KeyEncoder, PlanError, Plans, TargetPlan, build_plans
from fetcher.engine._rows import (
    SLOT_BOOL,
    SLOT_BYTES,
    SLOT_DOUBLE,
    SLOT_INT64,
    SLOT_LIST,
    SLOT_OF_TYPE,
    SLOT_STRING,
    ValuesEncoder,
    varint,
)
from fetcher.engine._tiers import CacheTiers, StoreHandle

__all__ = [
    "SLOT_BOOL",
    "SLOT_BYTES",
    "SLOT_DOUBLE",
    "SLOT_INT64",
    "SLOT_LIST",
    "SLOT_OF_TYPE",
    "SLOT_STRING",
    "CacheTiers",
    "ColumnReader",
    "DerivedPlan",
    "EntityVector",
    "FetchEngine",
    "KeyEncoder",
    "Pick",
    "PlanError",
    "Plans",
    "StoreHandle",
    "TargetPlan",
    "ValuesEncoder",
    "build_plans",
    "varint",
]

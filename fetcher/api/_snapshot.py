"""One immutable serving snapshot: catalog, plans and proto views, swapped whole on reload."""

from __future__ import annotations

from dataclasses import dataclass

from fetcher.api._proto_views import ProtoViews
from fetcher.api._wire import encode_values, read_columns
from fetcher.catalog import Catalog
from fetcher.engine import Plans, build_plans


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one request is served from; a request holds one snapshot from start to end."""

    catalog: Catalog
    plans: Plans
    views: ProtoViews


def build_snapshot(catalog: Catalog) -> Snapshot:
    """Compile a validated catalog into plans and views (all the work done once per load)."""
    plans = build_plans(catalog.groups, catalog.services, catalog.codecs, encode_values,
                        read_columns=read_columns)
    return Snapshot(catalog, plans, ProtoViews(catalog.version, catalog.groups, plans))

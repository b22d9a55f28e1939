"""One immutable serving snapshot: catalog, plans and proto views, swapped whole on reload."""

from __future__ import annotations

from dataclasses import dataclass

from fetcher.catalog import Catalog
from fetcher.plan import Plans, build_plans
from fetcher.proto_views import ProtoViews


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one request is served from; a request holds one snapshot from start to end."""

    catalog: Catalog
    plans: Plans
    views: ProtoViews


def build_snapshot(catalog: Catalog) -> Snapshot:
    """Compile a validated catalog into plans and views (all the work done once per load)."""
    plans = build_plans(catalog.groups, catalog.services, catalog.codecs)
    return Snapshot(catalog, plans, ProtoViews(catalog.version, catalog.groups, plans))

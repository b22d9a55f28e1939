"""What the servicer tells about each answered request: the ServedLog hook.

The feature log (fetcher.featurelog.FeatureLog) implements it; the servicer calls it once
per answered feature request, after the response is built, with what it already has.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from fetcher.catalog import Catalog
from fetcher.codec import KeyValue
from fetcher.engine import TargetPlan


class ServedLog(Protocol):
    """Receives what each answered GetFeatures / GetBatchFeatures served; must not block."""

    def served(
        self,
        catalog: Catalog,
        plan: TargetPlan,
        entities: Sequence[Sequence[KeyValue]],
        ats: Sequence[int | None],
        contexts: Sequence[Sequence[Any]] | None,
        wires: Sequence[bytes],
    ) -> None:
        """One request's entities (request key values, in the plan's key order), their
        `at`s, their request-time values (in the plan's context order; None when the
        target declares none) and the FeatureVector wire bytes sent for each."""
        ...

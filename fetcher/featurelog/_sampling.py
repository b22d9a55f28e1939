"""Which entities a service's feature log keeps: a deterministic sample by entity key.

The rule, exactly (docs/operations.md, "Feature log"; other systems reproduce it):

    key_bytes = the service's request key values, in the order of its request keys
                (ListFeatureGroups' service keys), encoded as entity key bytes
                (docs/storage-layout.md: int64 8 bytes big-endian; string and bytes a
                4-byte big-endian length, then the UTF-8 / raw bytes)
    digest    = SHA-256(UTF-8(service name) || 0x00 || key_bytes)
    bucket    = (first 8 bytes of digest as a big-endian unsigned integer) mod 1,000,000
    threshold = floor(sample_percent * 10,000 + 0.5)
    kept      = bucket < threshold

So an entity is in or out for good (until the percent changes), a higher percent keeps a
superset of a lower one, 0 keeps none and 100 every one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from fetcher.codec import KeyValue, key_encoder
from fetcher.types import KeyColumn

BUCKETS = 1_000_000
_sha256 = hashlib.sha256


def sample_threshold(percent: float) -> int:
    """Buckets kept out of BUCKETS for a sample percent (0 to 100)."""
    return max(0, min(BUCKETS, int(percent * 10_000 + 0.5)))


def sample_bucket(service: str, key_bytes: bytes) -> int:
    """The bucket (0 to BUCKETS - 1) of one entity of `service`."""
    digest = _sha256(service.encode("utf-8") + b"\0" + key_bytes).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


class Sampler:
    """The sampling rule of one service, built once per plan."""

    __slots__ = ("_encode", "_prefix", "_threshold", "all", "none")

    def __init__(self, service: str, keys: Sequence[KeyColumn], percent: float) -> None:
        self._threshold = sample_threshold(percent)
        self._prefix = service.encode("utf-8") + b"\0"
        self._encode = key_encoder(keys)
        self.all = self._threshold >= BUCKETS
        self.none = self._threshold <= 0

    def selected(self, values: Sequence[KeyValue]) -> bool:
        """Whether the entity with these request key values (in key order) is kept."""
        digest = _sha256(self._prefix + self._encode(values)).digest()
        return int.from_bytes(digest[:8], "big") % BUCKETS < self._threshold

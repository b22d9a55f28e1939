"""TLS credentials and per-client authorization of FeatureService reads.

A client is recognised by its mTLS certificate (CN or a SAN, read from the call's
auth_context) or by a bearer token (`authorization: Bearer <token>` metadata; only
sha256 digests are kept, and tokens read from env vars are registered with the log
redactor). Each client may read the feature groups and services its rule lists.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from fetcher.config import AuthzClient, TlsSettings
from fetcher.server._logging_json import Redactor

log = logging.getLogger("fetcher.server.security")

_CERT_KEYS = ("x509_subject_alternative_name", "x509_common_name")
# Request `target` oneof field -> the kind named in rules and refusals.
TARGET_KINDS = {"feature_group": "group", "feature_service": "service"}


def server_credentials(tls: TlsSettings) -> grpc.ServerCredentials:
    """gRPC server credentials from validated TLS settings (files are read now)."""
    assert tls.cert_file is not None and tls.key_file is not None
    with open(tls.key_file, "rb") as fh:
        key = fh.read()
    with open(tls.cert_file, "rb") as fh:
        chain = fh.read()
    root = None
    if tls.client_ca_file is not None:
        with open(tls.client_ca_file, "rb") as fh:
            root = fh.read()
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=root, require_client_auth=tls.require_client_cert
    )


@dataclass(frozen=True, slots=True)
class Grant:
    """What one recognised client may read."""

    client: str
    groups: frozenset[str]
    services: frozenset[str]
    push_groups: frozenset[str] = frozenset()

    def allows(self, kind: str, name: str) -> bool:
        """True when the client may read the group or service `name` (kind "push": push
        events to the group `name`)."""
        names = (
            self.groups if kind == "group" else self.push_groups if kind == "push"
            else self.services
        )
        return "*" in names or name in names


class Authorizer:
    """Maps a call to its client (certificate identity or bearer token) and checks reads."""

    def __init__(
        self, clients: Mapping[str, AuthzClient], env: Mapping[str, str], redactor: Redactor
    ) -> None:
        self._by_identity: dict[str, Grant] = {}
        self._by_token: dict[bytes, Grant] = {}
        for client in clients.values():
            grant = Grant(client.name, frozenset(client.groups), frozenset(client.services),
                          frozenset(client.push_groups))
            for identity in client.identities:
                self._by_identity[identity] = grant
            if client.token_sha256:
                self._by_token[bytes.fromhex(client.token_sha256)] = grant
            elif client.token_env:
                token = env[client.token_env]
                redactor.add(token)
                self._by_token[hashlib.sha256(token.encode()).digest()] = grant

    def warn_unknown(self, groups: Collection[str], services: Collection[str]) -> None:
        """Log rules naming groups or services the loaded catalog does not have."""
        seen: set[Grant] = set(self._by_identity.values()) | set(self._by_token.values())
        for grant in sorted(seen, key=lambda g: g.client):
            for kind, names, known in (("group", grant.groups, groups),
                                       ("service", grant.services, services),
                                       ("push group", grant.push_groups, groups)):
                unknown = sorted(n for n in names if n != "*" and n not in known)
                if unknown:
                    log.warning(
                        "authz.clients.%s: %s(s) %s not in the loaded config",
                        grant.client, kind, ", ".join(unknown),
                    )

    def authenticate_header(self, value: str | None) -> Grant | None:
        """The grant of an HTTP `Authorization: Bearer <token>` header, or None."""
        if value is None:
            return None
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self._by_token.get(hashlib.sha256(token.strip().encode()).digest())

    def authenticate(self, context: Any) -> Grant | None:
        """The calling client's grant, or None when the call is not from a known client."""
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                scheme, _, token = str(value).partition(" ")
                if scheme.lower() != "bearer" or not token.strip():
                    return None
                digest = hashlib.sha256(token.strip().encode()).digest()
                # A wrong token is refused even if a certificate would match: it was meant.
                return self._by_token.get(digest)
        if not self._by_identity:
            return None
        auth = context.auth_context() or {}
        for key in _CERT_KEYS:
            for raw in auth.get(key, ()):
                name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
                grant = self._by_identity.get(name)
                if grant is not None:
                    return grant
        return None

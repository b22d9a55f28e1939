"""Helpers shared by the tests that talk to real servers (ports, readiness checks)."""

from __future__ import annotations

import json
import socket
import urllib.request
from typing import Any

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def dynamodb_answers(url: str) -> bool:
    """True when a DynamoDB ListTables call to `url` (a moto server) succeeds."""
    request = urllib.request.Request(
        url + "/", data=b"{}", method="POST",
        headers={
            "X-Amz-Target": "DynamoDB_20120810.ListTables",
            "Content-Type": "application/x-amz-json-1.0",
            # moto routes by the credential scope; it does not check the signature.
            "Authorization": "AWS4-HMAC-SHA256 Credential=x/20240101/us-east-1/dynamodb/"
            "aws4_request, SignedHeaders=host, Signature=0",
        },
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=2) as reply:
            return "TableNames" in json.load(reply)
    except (OSError, ValueError):
        return False


def spy_redis_read_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count what RedisStore's pipelined read connection writes to its socket (a spy).

    Each element is one socket write (its byte count): one write followed by reading
    every reply is one round trip.
    """
    from kvstores.redis_pipeline import _ReplyProtocol

    writes: list[int] = []
    real_send = _ReplyProtocol.send

    def counting_send(self: _ReplyProtocol, payload: bytes, want: int, now: float) -> Any:
        writes.append(len(payload))
        return real_send(self, payload, want, now)

    monkeypatch.setattr(_ReplyProtocol, "send", counting_send)
    return writes

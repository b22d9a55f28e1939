"""Bytes that are not gRPC, sent to the real server's port: the connection is closed (or the
call refused) and the server keeps serving everyone else."""

from __future__ import annotations

import socket
import struct

import grpc
import pytest

from fetcher.v1 import feature_service_pb2 as pb
from fetcher.v1 import feature_service_pb2_grpc as pb_grpc
from tests.property.conftest import PropertyServer

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _frame(kind: int, flags: int, stream: int, payload: bytes, length: int | None = None) -> bytes:
    size = len(payload) if length is None else length
    return struct.pack(">I", size)[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


WIRE_GARBAGE = {
    "random bytes": bytes(range(256)) * 4,
    "http/1.1 request": b"GET /fetcher.v1.FeatureService/GetFeatures HTTP/1.1\r\nHost: x\r\n\r\n",
    "tls client hello": bytes.fromhex("160301002f0100002b0303") + b"\x00" * 40,
    "preface then truncated settings frame": PREFACE + _frame(4, 0, 0, b"\x00\x03", length=12),
    "frame larger than max frame size": PREFACE + _frame(4, 0, 0, b"") + _frame(
        0, 0, 1, b"x" * 16, length=(1 << 24) - 1),
    "headers on stream 0": PREFACE + _frame(4, 0, 0, b"") + _frame(1, 4, 0, b"\x82\x86"),
    "garbage hpack block": PREFACE + _frame(4, 0, 0, b"") + _frame(1, 4, 1, b"\xff" * 32),
}


def _served(prop: PropertyServer) -> None:
    with grpc.insecure_channel(prop.server.target) as channel:
        request = pb.GetFeaturesRequest(feature_group="merchant_stats")
        request.keys["merchant_id"].int64_value = 3
        response = pb_grpc.FeatureServiceStub(channel).GetFeatures(request, timeout=5)
    assert len(response.vector.statuses) > 0


@pytest.mark.parametrize("name", sorted(WIRE_GARBAGE))
def test_non_grpc_bytes_close_the_connection(prop_server: PropertyServer, name: str) -> None:
    with socket.create_connection(("127.0.0.1", prop_server.server.port), timeout=5) as sock:
        sock.sendall(WIRE_GARBAGE[name])
        sock.shutdown(socket.SHUT_WR)  # a truncated frame stays truncated
        received = b""
        while chunk := sock.recv(65536):  # a GOAWAY at most, then EOF (a timeout fails)
            received += chunk
            assert len(received) < 1 << 20
    assert prop_server.server.process.poll() is None
    _served(prop_server)


@pytest.mark.parametrize("payload", [b"\xff\xff\xff\xff", b"\x0a\xff", b"\x12\x05ab", b"\x80"],
                         ids=["bad-varint", "truncated-len", "short-field", "lone-continuation"])
def test_protobuf_that_does_not_parse_is_refused(prop_server: PropertyServer,
                                                  payload: bytes) -> None:
    with grpc.insecure_channel(prop_server.server.target) as channel:
        raw = channel.unary_unary("/fetcher.v1.FeatureService/GetFeatures",
                                  request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as caught:
            raw(payload, timeout=5)
    assert caught.value.code() is not grpc.StatusCode.OK
    assert caught.value.code() is not grpc.StatusCode.DEADLINE_EXCEEDED
    _served(prop_server)

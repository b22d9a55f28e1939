"""The ceiling: a bare grpc.aio FeatureService answering with prebuilt responses.

    python -m bench.ceiling --port PORT [--users N --event-ms T]

Same proto, same event loop (uvloop), same message sizes as the fetcher's answers
for the bench service, and no work besides gRPC itself: what a Python gRPC server
can do on one core at best. The answers are the fetcher's for the first users, so
the bench checks them like any other system's.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import grpc
import uvloop

from bench.data import FIRST_USER, GROUPS, SERVICE, all_feature_names, expected_vector
from fetcher.v1 import feature_service_pb2 as pb
from fetcher.v1 import feature_service_pb2_grpc as pb_grpc


def _metadata() -> pb.ResponseMetadata:
    names = all_feature_names()
    per_group = len(names) // len(GROUPS)
    return pb.ResponseMetadata(
        config_version="ceiling",
        feature_names=names,
        feature_types=[pb.DOUBLE] * len(names),
        groups=list(GROUPS),
        feature_groups=[i // per_group for i in range(len(names))],
    )


def _vector(user: int, event_ms: int) -> pb.FeatureVector:
    values = expected_vector(user)
    return pb.FeatureVector(
        statuses=[pb.PRESENT] * len(values),
        double_values=values,
        event_timestamps_ms=[event_ms] * len(GROUPS),
    )


class CeilingServicer(pb_grpc.FeatureServiceServicer):  # type: ignore[misc]
    """Answers every GetFeatures / GetBatchFeatures with a response built once."""

    def __init__(self, event_ms: int) -> None:
        self._event_ms = event_ms
        self._metadata = _metadata()
        self._single = pb.GetFeaturesResponse(
            metadata=self._metadata, vector=_vector(FIRST_USER, event_ms)
        )
        self._batches: dict[int, pb.GetBatchFeaturesResponse] = {}

    def _batch(self, count: int) -> pb.GetBatchFeaturesResponse:
        response = self._batches.get(count)
        if response is None:  # built on the first request of each size only
            response = pb.GetBatchFeaturesResponse(
                metadata=self._metadata,
                vectors=[_vector(FIRST_USER + i, self._event_ms) for i in range(count)],
            )
            self._batches[count] = response
        return response

    async def GetFeatures(self, request: Any, context: Any) -> pb.GetFeaturesResponse:
        """The prebuilt single-entity response."""
        return self._single

    async def GetBatchFeatures(self, request: Any, context: Any) -> pb.GetBatchFeaturesResponse:
        """The prebuilt response with as many vectors as the request has entities."""
        return self._batch(len(request.entities))


async def serve(port: int, event_ms: int) -> None:
    """Serve on 127.0.0.1:port until killed."""
    server = grpc.aio.server()
    pb_grpc.add_FeatureServiceServicer_to_server(CeilingServicer(event_ms), server)
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise SystemExit(f"ceiling: cannot bind 127.0.0.1:{port}")
    await server.start()
    print(f"ceiling: serving {SERVICE} on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


def main(argv: list[str] | None = None) -> int:
    """Entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--event-ms", type=int, required=True)
    args = parser.parse_args(argv)
    uvloop.run(serve(args.port, args.event_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())

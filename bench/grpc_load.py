"""A gRPC load generator that sends prebuilt request bytes and never decodes the answers.

    python -m bench.grpc_load --target HOST:PORT --protoset FILE --call pkg.Service.Method \
        --data REQUESTS.json --concurrency N --seconds S

Why: ghz decodes every response into a dynamic message and keeps every result for
its report. At 100 entities per response (about 34 KB) that saturates ghz's core at
about 300 requests/s while the server under test idles (measured with the bare
grpc.aio server: ghz at 100% of CPU 1, the server at 6-16% of CPU 0), so the ratio
of two fast systems then measures ghz. This client builds the requests once from the
same JSON as `ghz -D` (with the same protoset), serializes them once, and runs
`--concurrency` callers on one channel (one HTTP/2 connection, as `ghz --connections 1`)
that round-robin over them and read each answer as bytes. Answers are checked before
any measurement by bench/checks.py, not here. Prints one JSON line: requests, errors,
seconds, p50_ms, p99_ms (the fields of loadgen.Measurement) and an error sample.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import uvloop
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory


def request_bytes(protoset: Path, call: str, data: Path) -> tuple[str, list[bytes]]:
    """The gRPC method path of `call` and each request of `data` serialized."""
    service_name, _, method_name = call.rpartition(".")
    files = descriptor_pb2.FileDescriptorSet.FromString(protoset.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    method = pool.FindServiceByName(service_name).FindMethodByName(method_name)
    request_class = message_factory.GetMessageClass(method.input_type)
    items: list[dict[str, Any]] = json.loads(data.read_text())
    payloads = [json_format.ParseDict(item, request_class()).SerializeToString() for item in items]
    if not payloads:
        raise SystemExit(f"{data}: no requests")
    return f"/{service_name}/{method_name}", payloads


async def load(
    target: str, path: str, payloads: list[bytes], concurrency: int, seconds: float
) -> dict[str, Any]:
    """Run the callers for `seconds`; counts and latency percentiles."""
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    latencies: list[float] = []
    errors: list[str] = []
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        # No (de)serializers: the request goes out as the bytes given, the answer
        # comes back as bytes.
        call = channel.unary_unary(path)
        await call(payloads[0], timeout=10)  # connected before the clock starts
        started = time.perf_counter()
        end = started + seconds

        async def caller(index: int) -> None:
            n = len(payloads)
            i = index
            while True:
                t0 = time.perf_counter()
                if t0 >= end:
                    return
                try:
                    await call(payloads[i % n], timeout=10)
                except grpc.aio.AioRpcError as exc:
                    errors.append(f"{exc.code().name}: {exc.details()}")
                else:
                    latencies.append(time.perf_counter() - t0)
                i += concurrency

        await asyncio.gather(*(caller(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
    if not latencies:
        raise SystemExit(f"no successful call of {path} on {target}: {errors[:1]}")
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "seconds": elapsed,
        "p50_ms": cuts[49] * 1e3,
        "p99_ms": cuts[98] * 1e3,
        "error_sample": errors[0] if errors else "",
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bench.grpc_load")
    parser.add_argument("--target", required=True)
    parser.add_argument("--protoset", type=Path, required=True)
    parser.add_argument("--call", required=True, help="package.Service.Method, as ghz --call")
    parser.add_argument("--data", type=Path, required=True, help="JSON list, as ghz -D")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    path, payloads = request_bytes(args.protoset, args.call, args.data)
    result = uvloop.run(load(args.target, path, payloads, args.concurrency, args.seconds))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

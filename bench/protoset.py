"""A FileDescriptorSet (ghz --protoset) built from generated Python protobuf modules.

Feast ships its generated `_pb2` modules but not the `.proto` files, so the descriptor
set is taken from the loaded descriptors; the fetcher's is built the same way so every
gRPC system is loaded with the same ghz options. Needs only protobuf (both venvs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2


def descriptor_set(file_descriptor: Any) -> bytes:
    """`file_descriptor` and everything it imports, dependencies first, serialized."""
    seen: set[str] = set()
    ordered: list[descriptor_pb2.FileDescriptorProto] = []

    def visit(fd: Any) -> None:
        if fd.name in seen:
            return
        seen.add(fd.name)
        for dependency in fd.dependencies:
            visit(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        ordered.append(proto)

    visit(file_descriptor)
    return descriptor_pb2.FileDescriptorSet(file=ordered).SerializeToString()


def write_descriptor_set(file_descriptor: Any, path: Path) -> Path:
    """Write the descriptor set of `file_descriptor` to `path`."""
    path.write_bytes(descriptor_set(file_descriptor))
    return path

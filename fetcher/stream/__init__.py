"""The Kafka stream writer: `fetcher stream --group G` consumes an aggregation group's topic
and applies each event through EventWriter.push (the PushEvents write path), committing
offsets only after the store acknowledged. docs/streaming.md.

Imports the load (EventWriter), catalog, config and kvstores layers; nothing of the
serving path.
"""

from fetcher.stream._cli import StreamSetupError, check_topics, run_stream, stream_config
from fetcher.stream._consumer import BatchOutcome, StreamConfig, StreamConsumer, StreamStopped
from fetcher.stream._decode import EventDecoder, event_schema
from fetcher.stream._metrics import StreamMetrics

__all__ = [
    "BatchOutcome",
    "EventDecoder",
    "StreamConfig",
    "StreamConsumer",
    "StreamMetrics",
    "StreamSetupError",
    "StreamStopped",
    "check_topics",
    "event_schema",
    "run_stream",
    "stream_config",
]

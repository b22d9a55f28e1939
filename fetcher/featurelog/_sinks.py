"""The sink of [log.features] `sink`: rotating files or a Kafka topic, with their metrics."""

from __future__ import annotations

from pathlib import Path

from fetcher.config import FeatureLogSettings
from fetcher.featurelog._files import FileSink
from fetcher.featurelog._sink import LogSink
from fetcher.metrics import Metrics


def open_sink(settings: FeatureLogSettings, metrics: Metrics, tag: str | None = None) -> LogSink:
    """The sink the settings name (OSError: its directory, or its producer's settings,
    cannot be used; a broker that is down is no error: records drop until it answers)."""
    if settings.sink == "kafka":
        # Imported only when chosen: the file sink needs no Kafka client.
        from confluent_kafka import KafkaException

        from fetcher.featurelog._kafka import KafkaLogConfig, KafkaSink

        try:
            return KafkaSink(
                KafkaLogConfig.from_settings(settings),
                lost=lambda service, reason, records: metrics.feature_log_dropped.labels(
                    service, reason).inc(records),
            )
        except KafkaException as exc:  # a producer setting librdkafka refuses
            raise OSError(str(exc)) from None
    return FileSink(
        Path(settings.directory), max_file_bytes=settings.max_file_bytes,
        max_file_seconds=settings.max_file_seconds, tag=tag,
        closed=lambda _path, _records: metrics.feature_log_files.inc(),
        lost=lambda service, records: metrics.feature_log_dropped.labels(
            service, "error").inc(records),
    )

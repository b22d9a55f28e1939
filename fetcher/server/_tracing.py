"""Optional OpenTelemetry tracing: one span per RPC when tracing.enabled is true.

opentelemetry is not a dependency: install opentelemetry-api (and an SDK and exporter,
e.g. through `opentelemetry-instrument`, which reads the OTEL_* env vars) to use it.
"""

from __future__ import annotations

import importlib
from typing import Any

from fetcher.config import SettingsError, TracingSettings


def load_tracer(settings: TracingSettings) -> Any | None:
    """The tracer spans are made with, or None when tracing is off.

    Raises SettingsError naming tracing.enabled when opentelemetry is not installed.
    """
    if not settings.enabled:
        return None
    try:
        trace = importlib.import_module("opentelemetry.trace")
    except ImportError:
        raise SettingsError(
            "tracing.enabled: is true but the opentelemetry package is not installed. "
            "Fix: pip install opentelemetry-api opentelemetry-sdk (and an exporter), or set "
            "tracing.enabled = false (FETCHER__TRACING__ENABLED=false)"
        ) from None
    return trace.get_tracer(settings.service_name)

"""fetcher.metrics.LimitedLog: one warning per interval per topic, with the held-back count."""

from __future__ import annotations

import logging
import time

import pytest

from fetcher.metrics import LimitedLog, Metrics


def _clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    return now


def test_one_warning_per_interval_and_the_count_held_back(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    now = _clock(monkeypatch)
    logger = logging.getLogger("test.limited")
    limited = LimitedLog()
    with caplog.at_level(logging.WARNING, logger="test.limited"):
        for i in range(5):
            limited.warn(logger, "store", "store %s failed", i, every_s=10.0)
        now[0] += 9.9
        limited.warn(logger, "store", "store %s failed", 5, every_s=10.0)
        limited.warn(logger, "other", "other %s", "x", every_s=10.0)  # its own topic
        now[0] += 0.1
        limited.warn(logger, "store", "store %s failed", 6, every_s=10.0)
        now[0] += 10.0
        limited.warn(logger, "store", "store %s failed", 7, every_s=10.0)
    assert [r.getMessage() for r in caplog.records] == [
        "store 0 failed",
        "other x",
        "store 6 failed (5 more like it in the last 10 s)",
        "store 7 failed",  # nothing held back since the last one
    ]


def test_metrics_log_limited_uses_it(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    now = _clock(monkeypatch)
    logger = logging.getLogger("test.limited.metrics")
    metrics = Metrics()
    with caplog.at_level(logging.WARNING, logger="test.limited.metrics"):
        metrics.log_limited(logger, "t", "a %d", 1, every_s=1.0)
        metrics.log_limited(logger, "t", "a %d", 2, every_s=1.0)
        now[0] += 1.0
        metrics.log_limited(logger, "t", "a %d", 3, every_s=1.0)
    assert [r.getMessage() for r in caplog.records] == [
        "a 1", "a 3 (1 more like it in the last 1 s)"]

"""Unit tests of fetcher.engine."""

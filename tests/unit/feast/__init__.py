"""Unit tests of fetcher.feast (no network, no Feast package)."""

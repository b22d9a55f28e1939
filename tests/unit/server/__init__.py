"""Unit tests of fetcher.server."""

"""Unit tests of fetcher.codec."""

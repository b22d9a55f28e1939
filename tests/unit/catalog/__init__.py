"""Unit tests of fetcher.catalog."""

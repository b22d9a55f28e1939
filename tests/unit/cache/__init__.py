"""Unit tests of fetcher.cache."""

"""Unit tests of fetcher.config."""

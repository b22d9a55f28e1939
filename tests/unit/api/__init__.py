"""Unit tests of fetcher.api."""

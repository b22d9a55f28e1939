"""Unit tests of fetcher.load."""

"""Unit tests of fetcher.demo."""

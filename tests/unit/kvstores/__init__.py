"""Unit tests of the kvstores package (embedded store, URL factory)."""

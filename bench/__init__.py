"""Benchmarks: `make bench` (bench/run.py) and micro-benchmarks of single parts."""

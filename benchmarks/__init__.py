"""Benchmarks a user runs (latency, serving, load, quality): each module runs as `python -m benchmarks.NAME`."""

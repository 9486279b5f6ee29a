"""Benchmarks: `python -m benchmarks.codec` and `python -m benchmarks.pipeline` (see docs/benchmarks.md)."""

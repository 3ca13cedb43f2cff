"""Benchmarks: scripts that print figures (docs/benchmarks.md); not tests."""

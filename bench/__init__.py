"""Benchmarks for tether: direct app calls versus calls through a sidecar pair."""

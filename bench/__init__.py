"""Benchmarks (not tests): figures printed from one run, measured side by side."""

"""Benchmark case adapters: one module per implementation, one JSON line per run."""

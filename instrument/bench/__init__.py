"""Benchmarks that print numbers: latency, model, music, soak, controllers."""

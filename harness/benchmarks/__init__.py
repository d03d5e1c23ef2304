"""Benchmarks of the harness engine, each run as `python -m harness.benchmarks.<name>`."""

"""Benchmarks run by hand (never collected by pytest): ``python tests/benchmarks/<name>.py``."""

"""Benchmarks. Each compares against a baseline measured in the same run; ``python -m bench``."""

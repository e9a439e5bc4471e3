"""Benchmark scenarios: each module has `run(quick) -> dict`; `python -m bench` runs them all."""

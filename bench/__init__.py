"""Benchmarks: each script measures one part beside its floor; see docs/benchmarks.md for the commands."""

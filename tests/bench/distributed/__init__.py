"""Benchmark of searches on a Dask cluster (spec.workers): `python -m tests.bench.distributed`."""

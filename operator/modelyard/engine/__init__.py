"""The distributed engine of runs with spec.workers (Dask): what the operator's builders and the
training workload agree on, and the per-run TLS material that keeps other tenants off it."""

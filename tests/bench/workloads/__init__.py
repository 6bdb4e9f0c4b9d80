"""Workload benchmark (issue 7): `python -m tests.bench.workloads [--quick]`.

Ingest of a large seeded CSV by `modelyard-worker ingest` against pyarrow's own read_csv +
write_table on the same file, and `modelyard-worker train` against a plain scikit-learn
fit-and-evaluate script on the same data. Every run is a child process, measured by wall time
and the child's own peak RSS (wait4 rusage); ours and the peer alternate, page cache warm for
both. Writes docs/benchmarks/workloads.md and workloads.png.
"""

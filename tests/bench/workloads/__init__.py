"""Workload benchmark (issue 7): `python -m tests.bench.workloads [--quick]`.

Ingest of a large seeded CSV by `modelyard-worker ingest` against pyarrow's own read_csv +
write_table on the same file, and `modelyard-worker train` against a plain scikit-learn
fit-and-evaluate script on the same data. Every run is a child process, measured by wall time
and the child's own peak RSS (VmHWM); ours and the peer alternate, page cache warm for
both. S3 is a versitygw of our own on loopback (s3server.py) unless --s3-endpoint names one.
Writes docs/benchmarks/workloads.md and workloads.png.
"""

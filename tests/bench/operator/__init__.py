"""Operator scale benchmark (issue 7): `python -m tests.bench.operator [--quick]`.

The operator runs as its own `modelyard operator` process against the cluster in $KUBECONFIG
(the control-plane tier is enough) in a fresh namespace; this package applies objects in bulk,
watches for their child Jobs, samples the operator's memory and CPU from /proc, and writes
docs/benchmarks/operator.md and operator.png.
"""

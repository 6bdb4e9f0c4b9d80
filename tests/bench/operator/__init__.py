"""Operator scale benchmark (issue 7): `python -m tests.bench.operator [--quick]`.

The operator runs as its own `modelyard operator` process, on the operator image's locked
packages (a virtual environment from tests/bench/venvs.py), against a private control plane
(`--shared`: the cluster in $KUBECONFIG) in a fresh namespace; this package applies objects in bulk,
watches for their child Jobs, samples the operator's memory and CPU from /proc, and writes
docs/benchmarks/operator.md and operator.png.
"""

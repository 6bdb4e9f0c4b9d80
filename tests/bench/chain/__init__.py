"""The whole chain's time budget: the quickstart from `kubectl apply` to the first prediction
on the local cluster, split into where the time goes (`python -m tests.bench.chain`)."""

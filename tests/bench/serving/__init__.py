"""Model serving benchmark: our server against MLServer, KServe and a FastAPI floor, and our
request handler and model under uvicorn and granian (what our HTTP server alone is worth).

    .venv/bin/python -m tests.bench.serving [--quick]

Builds the model files (seeded), installs each peer into its own virtual environment under
~/.cache/modelyard/bench/venvs/<peer> (pinned, reused), gets wrk (Debian) and vegeta (Go),
starts every server on loopback as its documentation says, checks that all of them return the
same predictions, then measures closed-loop (wrk, concurrency 1/8/64) and open-loop (vegeta,
fixed rates) and writes docs/benchmarks/serving.md, .png and .json. A cell where any server
answered errors or too few requests is marked invalid there and counts for no goal.
"""

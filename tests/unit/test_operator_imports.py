"""The operator process imports only what every reconcile needs: a library that one kind of run
needs is imported when that run comes (operator-memory.md measures what each costs)."""

from __future__ import annotations

import subprocess
import sys

# cryptography alone is 8 MiB resident; the rest are workload libraries the operator never runs.
HEAVY = {"cryptography", "numpy", "pandas", "pyarrow", "sklearn", "scipy", "boto3", "dask"}


def test_starting_the_operator_loads_no_library_only_some_runs_need() -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, modelyard.controllers.runner; "
            "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert HEAVY.isdisjoint(loaded), sorted(HEAVY.intersection(loaded))


def test_a_dask_run_still_gets_its_certificates_once_cryptography_is_imported_late() -> None:
    from cryptography import x509

    from modelyard.engine import tls

    issued = tls.issue("iris-run-1")
    ca = x509.load_pem_x509_certificate(issued.ca_pem)
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    cert.verify_directly_issued_by(ca)
    assert cert.subject.rfc4514_string() == "CN=iris-run-1"

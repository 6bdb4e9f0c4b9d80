"""The operator process imports only what every reconcile needs: a library that one kind of run
needs is imported when that run comes, and the official Kubernetes client not at all
(operator-memory.md measures what each costs)."""

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


def test_the_operator_runs_without_the_official_kubernetes_client() -> None:
    """Its own calls need none (controllers/kube.py); with the client absent, as it is to the
    operator process, every handler module still loads."""
    loaded = _loaded("sys.modules['kubernetes'] = None; import modelyard.controllers.runner")
    assert "kopf" in loaded
    assert "modelyard.controllers.runner" in loaded


def test_modelyard_operator_keeps_kopf_from_loading_the_official_client() -> None:
    """The image has the client (for `uninstall-cleanup`), and kopf imports it whenever it can."""
    loaded = _loaded(
        "import argparse, types\n"
        "runner = types.ModuleType('modelyard.controllers.runner')\n"
        "def run(**_): import kopf\n"  # what the real runner does first
        "runner.run = run\n"
        "sys.modules[runner.__name__] = runner\n"
        "from modelyard.cli import local\n"
        "local._operator(argparse.Namespace(namespace=['ml'], liveness_port=8080, "
        "standalone=True))"
    )
    assert "kopf" in loaded
    assert not [name for name in loaded if name.split(".")[0] == "kubernetes"]


PRINT_LOADED = "print(' '.join(sorted(n for n, m in sys.modules.items() if m is not None)))"


def _loaded(code: str) -> list[str]:
    """The modules loaded once `code` ran in a new interpreter (None in sys.modules is a module
    kept out)."""
    return subprocess.run(
        [sys.executable, "-c", f"import sys\n{code}\n{PRINT_LOADED}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()


def test_a_dask_run_still_gets_its_certificates_once_cryptography_is_imported_late() -> None:
    from cryptography import x509

    from modelyard.engine import tls

    issued = tls.issue("iris-run-1")
    ca = x509.load_pem_x509_certificate(issued.ca_pem)
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    cert.verify_directly_issued_by(ca)
    assert cert.subject.rfc4514_string() == "CN=iris-run-1"

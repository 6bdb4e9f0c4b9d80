"""Once its model is loaded, the server puts what start-up left alive out of the cyclic
collector's reach, so that no request waits for a full collection to scan it all."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import gc
import sklearn.linear_model  # noqa: F401 (a model's libraries: what a server holds)
from modelyard.workloads.serving.runtime import freeze_startup_heap
before = len(gc.get_objects())
freeze_startup_heap()
print(before, len(gc.get_objects()))
"""


def test_a_full_collection_after_start_up_scans_only_what_came_later() -> None:
    ran = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    before, after = map(int, ran.stdout.split())
    assert before > 50_000  # the libraries' objects, all scanned by a full collection
    assert after < 1_000

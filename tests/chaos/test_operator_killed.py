"""SIGKILL at random moments while Datasets and TrainingJobs reconcile: afterwards exactly one Job
per ingestion and per run, every status right, and nothing stuck on a finalizer."""

from __future__ import annotations

import os
import random
import threading
import time

import pytest

from tests.chaos.conftest import FULL, OperatorFactory
from tests.chaos.kubelet_loop import KubeletLoop
from tests.chaos.objects import Objects, dataset, ready, training_job
from tests.kubelet import version_of, wait_for
from tests.plugins.kube import Cluster

pytestmark = pytest.mark.chaos

SIZE, KILLS = (200, 20) if FULL else (20, 5)
SEED = int(os.environ.get("MODELYARD_CHAOS_SEED", "8"))


def test_operator_killed_at_random_moments_leaves_one_job_per_run(
    crds: Cluster, namespace: str, operator_process: OperatorFactory
) -> None:
    rng = random.Random(SEED)
    objects = Objects(crds.api_client(), namespace)
    operator = operator_process()
    operator.start()

    def apply() -> None:
        for i in range(SIZE):
            objects.create(dataset(f"ds-{i}"))
            objects.create(training_job(f"tj-{i}", f"ds-{i}"))

    with KubeletLoop(crds.api_client(), namespace):
        applying = threading.Thread(target=apply)
        applying.start()
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.2, 3.0))
            operator.kill()
            time.sleep(rng.uniform(0.0, 1.0))
            operator.start()
        applying.join()
        wait_for(
            f"{SIZE} TrainingJobs Succeeded",
            lambda: (
                sum(
                    (tj.get("status") or {}).get("phase") == "Succeeded"
                    for tj in objects.all("TrainingJob")
                )
                == SIZE
            ),
            timeout=120 + SIZE,
        )

    jobs = objects.jobs()
    ingest = [j for j in jobs if "modelyard.dev/dataset" in j.metadata.labels]
    train = [j for j in jobs if "modelyard.dev/run" in j.metadata.labels]
    assert sorted(j.metadata.labels["modelyard.dev/dataset"] for j in ingest) == sorted(
        f"ds-{i}" for i in range(SIZE)
    ), "exactly one ingest Job per Dataset"
    assert sorted(j.metadata.labels["modelyard.dev/trainingjob"] for j in train) == sorted(
        f"tj-{i}" for i in range(SIZE)
    ), "exactly one training Job per TrainingJob"
    for body in objects.all("Dataset"):
        name, status = body["metadata"]["name"], body["status"]
        assert status["phase"] == "Ready", name
        assert status["version"] == version_of(name), name
        assert (ready(body) or {}).get("status") == "True", name
    for body in objects.all("TrainingJob"):
        name, status = body["metadata"]["name"], body["status"]
        dataset_name = body["spec"]["datasetRef"]["name"]
        assert [run["id"] for run in status["runs"]] == ["run-1"], name
        assert status["runs"][0]["datasetVersion"] == version_of(dataset_name), name
        assert (ready(body) or {}).get("reason") == "Succeeded", name

    # Nothing stuck: with the operator up, every object's finalizer is released.
    objects.delete_all("TrainingJob")
    objects.delete_all("Dataset")
    wait_for(
        "every object deleted",
        lambda: not objects.all("TrainingJob") and not objects.all("Dataset"),
        timeout=60 + SIZE,
    )
    print(f"chaos: {KILLS} SIGKILLs during {2 * SIZE} objects' reconciliation, 0 lost")


def unfinished(objects: Objects) -> dict[str, str]:
    """Objects not (yet) where they should end, with their phase and Ready reason."""
    found = {}
    for kind, phase in (("Dataset", "Ready"), ("TrainingJob", "Succeeded")):
        for body in objects.all(kind):
            status = body.get("status") or {}
            if status.get("phase") != phase:
                reason = (ready(body) or {}).get("reason")
                found[f"{kind}/{body['metadata']['name']}"] = f"{status.get('phase')} {reason}"
    return found

"""`modelyard uninstall-cleanup` against a real API server, run as the chart's pre-delete hook runs
it: the operator's Deployment and its pods go, the operator's finalizer comes off every object
where the operator worked (and no other finalizer does), and deleting an object then completes;
the hook's own ServiceAccount and roles, rendered from the chart, allow all of it. No operator
runs here: a Deployment with the chart's labels stands in for it, and its pods stay Pending (no
node), which is all the command looks at."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, utils
from kubernetes.client.exceptions import ApiException

from modelyard.api import GROUP, VERSION
from modelyard.controllers.bookkeeping import FINALIZER
from tests.conftest import EXAMPLES, PLURALS
from tests.plugins.kube import Cluster
from tests.unit.chart_render import CHART, helm

pytestmark = pytest.mark.integration

OPERATOR = "modelyard"
# What the chart's Deployment selects its pods by (templates/_helpers.tpl: selectorLabels).
OPERATOR_LABELS = {
    "app.kubernetes.io/name": "modelyard",
    "app.kubernetes.io/instance": "modelyard",
    "app.kubernetes.io/component": "operator",
}
# Another controller's finalizer: the command must leave it alone.
FOREIGN = "example.com/backup"


def _deployment(name: str, labels: dict[str, str]) -> dict[str, Any]:
    """A Deployment whose pods the `restricted` namespace admits."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "main",
                            "image": "modelyard/operator:0.1.0",
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                },
            },
        },
    }


def _quickstart(finalizers: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The quickstart's Dataset, TrainingJob and ModelDeployment, with these finalizers by kind."""
    objects = []
    for path in sorted((EXAMPLES / "quickstart").glob("*.yaml")):
        document: dict[str, Any] = yaml.safe_load(path.read_text())
        document["metadata"]["finalizers"] = finalizers[document["kind"]]
        objects.append(document)
    return objects


class Objects:
    """Modelyard objects in the test's namespaces; releases every finalizer at the end so that
    the namespaces can go."""

    def __init__(self, api: client.ApiClient) -> None:
        # Any: the client's declared types say `object` for custom objects.
        self.custom: Any = client.CustomObjectsApi(api)
        self.made: list[tuple[str, str, str]] = []

    def create(self, namespace: str, document: dict[str, Any]) -> None:
        plural = PLURALS[document["kind"]]
        self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, document)
        self.made.append((namespace, plural, document["metadata"]["name"]))

    def finalizers(self, namespace: str, kind: str, name: str) -> list[str]:
        found = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURALS[kind], name
        )
        return list(found["metadata"].get("finalizers") or [])

    def release_all(self) -> None:
        for namespace, plural, name in self.made:
            try:
                self.custom.patch_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural, name, {"metadata": {"finalizers": None}}
                )
            except ApiException as error:
                if error.status != 404:
                    raise


@pytest.fixture
def api(crds: Cluster) -> Iterator[client.ApiClient]:
    with crds.api_client() as api:
        yield api


@pytest.fixture
def objects(api: client.ApiClient) -> Iterator[Objects]:
    made = Objects(api)
    yield made
    made.release_all()


@pytest.fixture
def unwatched(api: client.ApiClient) -> Iterator[str]:
    """A second namespace, which the namespaced cleanup must not touch."""
    name = f"uninstall-unwatched-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def _eventually(what: str, done: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _cleanup(
    crds: Cluster, namespace: str, *args: str, kubeconfig: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The command as the hook runs it, with the test cluster's kubeconfig (or another's)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "modelyard.cli",
            "uninstall-cleanup",
            "--kubeconfig",
            str(kubeconfig or crds.kubeconfig),
            "--namespace",
            namespace,
            "--deployment",
            OPERATOR,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _selector(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in labels.items())


def test_cleanup_stops_the_operator_then_releases_only_its_finalizer(
    crds: Cluster, api: client.ApiClient, namespace: str, unwatched: str, objects: Objects
) -> None:
    # Any: plain dicts go to the API as they are, which the client's declared types do not allow.
    apps: Any = client.AppsV1Api(api)
    core: Any = client.CoreV1Api(api)
    apps.create_namespaced_deployment(namespace, _deployment(OPERATOR, OPERATOR_LABELS))
    bystander = {"app.kubernetes.io/name": "bystander"}
    apps.create_namespaced_deployment(namespace, _deployment("bystander", bystander))

    def pods(labels: dict[str, str]) -> list[Any]:
        return list(core.list_namespaced_pod(namespace, label_selector=_selector(labels)).items)

    _eventually("the operator's pod", lambda: bool(pods(OPERATOR_LABELS)))
    for document in _quickstart(
        {
            "Dataset": [FINALIZER],
            "TrainingJob": [FOREIGN, FINALIZER],
            "ModelDeployment": [FINALIZER],
        }
    ):
        objects.create(namespace, document)
    # The same objects where the operator did not work.
    for document in _quickstart({kind: [FINALIZER] for kind in PLURALS}):
        objects.create(unwatched, document)

    done = _cleanup(crds, namespace, "--watch-namespace", namespace)
    assert done.returncode == 0, done.stderr

    with pytest.raises(ApiException) as gone:
        apps.read_namespaced_deployment(OPERATOR, namespace)
    assert gone.value.status == 404
    assert not pods(OPERATOR_LABELS)
    assert apps.read_namespaced_deployment("bystander", namespace).metadata.name == "bystander"
    assert pods(bystander), "the other Deployment's pod must stay"
    assert "the operator has stopped" in done.stdout

    assert objects.finalizers(namespace, "Dataset", "iris") == []
    assert objects.finalizers(namespace, "TrainingJob", "iris-classifier") == [FOREIGN]
    assert objects.finalizers(namespace, "ModelDeployment", "iris") == []
    for kind, name in (("Dataset", "iris"), ("ModelDeployment", "iris")):
        assert objects.finalizers(unwatched, kind, name) == [FINALIZER], kind

    # With no operator left, deleting an object completes.
    objects.custom.delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURALS["Dataset"], "iris"
    )

    def dataset_gone() -> bool:
        try:
            objects.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURALS["Dataset"], "iris"
            )
        except ApiException as error:
            return bool(error.status == 404)
        return False

    _eventually("the Dataset to be deleted", dataset_gone, seconds=10)


def test_cleanup_of_a_cluster_wide_install_releases_every_namespace(
    crds: Cluster, namespace: str, unwatched: str, objects: Objects
) -> None:
    for where in (namespace, unwatched):
        for document in _quickstart({kind: [FINALIZER] for kind in PLURALS}):
            objects.create(where, document)

    # The operator's Deployment may already be gone (deleted by hand, or an earlier attempt).
    done = _cleanup(crds, namespace)
    assert done.returncode == 0, done.stderr
    assert f"deployment/{OPERATOR} not found" in done.stdout

    for where in (namespace, unwatched):
        for kind, name in (
            ("Dataset", "iris"),
            ("TrainingJob", "iris-classifier"),
            ("ModelDeployment", "iris"),
        ):
            assert objects.finalizers(where, kind, name) == [], (where, kind)


def _hook_account(crds: Cluster, api: client.ApiClient, namespace: str, tmp_path: Path) -> Path:
    """The chart's uninstall hook objects but its Job, created as Helm would create them for a
    release `modelyard` in `namespace` watching `namespace`, and a kubeconfig with a token of
    the hook's ServiceAccount."""
    rendered = subprocess.run(
        [
            helm(),
            "template",
            "modelyard",
            str(CHART),
            "--namespace",
            namespace,
            "--set",
            "rbac.clusterWide=false",
            "--set",
            f"watchNamespaces={{{namespace}}}",
            "--show-only",
            "templates/uninstall-hook.yaml",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    account = None
    for document in yaml.safe_load_all(rendered):
        if document and document["kind"] != "Job":
            utils.create_from_dict(api, document, namespace=namespace)
            if document["kind"] == "ServiceAccount":
                account = document["metadata"]["name"]
    assert account is not None
    token = client.CoreV1Api(api).create_namespaced_service_account_token(
        account,
        namespace,
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[])),
    )
    kubeconfig = yaml.safe_load(crds.kubeconfig.read_text())
    kubeconfig["users"] = [{"name": "admin", "user": {"token": token.status.token}}]
    path = tmp_path / "hook-kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    return path


def test_the_chart_gives_its_hook_every_right_the_command_uses(
    crds: Cluster,
    api: client.ApiClient,
    namespace: str,
    objects: Objects,
    tmp_path: Path,
) -> None:
    apps: Any = client.AppsV1Api(api)
    apps.create_namespaced_deployment(namespace, _deployment(OPERATOR, OPERATOR_LABELS))
    for document in _quickstart({kind: [FINALIZER] for kind in PLURALS}):
        objects.create(namespace, document)
    kubeconfig = _hook_account(crds, api, namespace, tmp_path)

    done = _cleanup(crds, namespace, "--watch-namespace", namespace, kubeconfig=kubeconfig)
    assert done.returncode == 0, done.stderr
    assert not apps.list_namespaced_deployment(namespace).items
    for kind in PLURALS:
        name = "iris-classifier" if kind == "TrainingJob" else "iris"
        assert objects.finalizers(namespace, kind, name) == [], kind

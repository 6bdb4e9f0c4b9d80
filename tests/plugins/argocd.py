"""Argo CD for the tests, as host processes beside a cluster: Redis (Debian's redis-server),
argocd-repo-server and argocd-application-controller (the multi-call binary that
hack/build-binaries.sh argocd builds from Go modules), and a Git repository served by `git daemon`,
all on loopback; and the quickstart scenario a user of Argo CD goes through, which the e2e tier
runs on the local node (tests/e2e/test_argocd.py) and the integration tier on a private control
plane (tests/integration/test_argocd.py).

Installed the way users install Argo CD and our health checks, minus the API server and UI, which
no test needs: Argo CD's own CRDs (from the argo-cd module's manifests/crds), the namespace
`argocd` with argocd-cm, argocd-rbac-cm, argocd-cmd-params-cm, argocd-secret and the `default`
AppProject (which argocd-server would otherwise create), then `kubectl -n argocd patch configmap
argocd-cm --patch-file gitops/argocd/argocd-cm-patch.yaml` as gitops/argocd/README.md says. The
controller reaches the cluster as https://kubernetes.default.svc through the admin kubeconfig
(ARGOCD_FAKE_IN_CLUSTER, the switch Argo CD's own local development uses).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.conftest import EXAMPLES, REPO
from tests.plugins.kube import HACK, Cluster, kubectl_binary
from tests.plugins.operator import apply_crds, free_port
from tests.unit.argocd_health import Health

NAMESPACE = "argocd"
GROUP, VERSION = "argoproj.io", "v1alpha1"
BUILD = HACK / "argocd-build"
HEALTH_PATCH = REPO / "gitops" / "argocd" / "argocd-cm-patch.yaml"
# How often the controller compares each Application with Git (argocd-cm timeout.reconciliation;
# Argo CD's default is 120 s plus jitter) and how long the repo server trusts what it last read of
# a branch (3 minutes by default): a push shows within seconds, as with a webhook.
RECONCILIATION_SECONDS = 5
PART_OF = {"app.kubernetes.io/part-of": "argocd"}


def _lib_value(name: str) -> str:
    """A setting of hack/lib.sh (ARGOCD_BIN_DIR...), as the build script computes it."""
    return subprocess.run(
        ["bash", "-c", f'source "{HACK / "lib.sh"}" && echo "${{{name}}}"'],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout.strip()


def build(request: pytest.FixtureRequest) -> Path:
    """The cached binaries, built on first use with the progress on the terminal (a cold build
    takes many minutes)."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        subprocess.run([str(HACK / "build-binaries.sh"), "argocd"], check=True)
    return Path(_lib_value("ARGOCD_BIN_DIR"))


def crds() -> list[dict[str, Any]]:
    """Application and AppProject, as the pinned release ships them."""
    listed = subprocess.run(
        ["go", "list", "-m", "-json", "github.com/argoproj/argo-cd/v3"],
        cwd=BUILD,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "GOTOOLCHAIN": "local"},
    )
    manifests = Path(json.loads(listed.stdout)["Dir"]) / "manifests" / "crds"
    return [
        yaml.safe_load((manifests / name).read_text())
        for name in ("application-crd.yaml", "appproject-crd.yaml")
    ]


@dataclass
class Process:
    """A daemon of ours: its own session, its log in a file, stopped through its Popen."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _start(name: str, command: list[str], logs: Path, env: dict[str, str] | None = None) -> Process:
    log = logs / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    return Process(name, popen, log)


def _wait_port(process: Process, port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as probe:
            probe.settimeout(1)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        if not process.alive():
            raise RuntimeError(f"{process.name} exited:\n{process.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{process.name} not listening on {port}:\n{process.tail()}")
        time.sleep(0.2)


class GitRepo:
    """A bare repository served read-only by `git daemon` on loopback, and a clone of it the
    test commits to and pushes from, as a user would."""

    def __init__(self, root: Path, logs: Path, stack: ExitStack) -> None:
        self.bare = root / "served" / "modelyard.git"
        self.work = root / "work"
        self.port = free_port()
        self.url = f"git://127.0.0.1:{self.port}/modelyard.git"
        self._git("init", "--bare", "--initial-branch=main", str(self.bare))
        self._git("init", "--initial-branch=main", str(self.work))
        self._git("-C", str(self.work), "remote", "add", "origin", str(self.bare))
        daemon = _start(
            "git-daemon",
            [
                "git",
                "daemon",
                "--reuseaddr",
                "--listen=127.0.0.1",
                f"--port={self.port}",
                f"--base-path={self.bare.parent}",
                "--export-all",
                "--informative-errors",
                str(self.bare.parent),
            ],
            logs,
        )
        stack.callback(daemon.stop)
        _wait_port(daemon, self.port)

    def _git(self, *args: str) -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "e2e",
            "GIT_AUTHOR_EMAIL": "e2e@modelyard.invalid",
            "GIT_COMMITTER_NAME": "e2e",
            "GIT_COMMITTER_EMAIL": "e2e@modelyard.invalid",
            "GIT_CONFIG_GLOBAL": "/dev/null",
        }
        return subprocess.run(
            ["git", *args], check=True, stdout=subprocess.PIPE, text=True, env=env
        ).stdout.strip()

    def push(self, message: str, files: Mapping[str, str | None]) -> str:
        """Write (or, for None, remove) these files, commit, push; the new commit's hash."""
        for path, content in files.items():
            target = self.work / path
            if content is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
        self._git("-C", str(self.work), "add", "--all")
        self._git("-C", str(self.work), "commit", "--quiet", "-m", message)
        self._git("-C", str(self.work), "push", "--quiet", "origin", "main")
        return self._git("-C", str(self.work), "rev-parse", "HEAD")


@dataclass
class ArgoCD:
    """The running components, the repository they sync from, and Applications."""

    cluster: Cluster
    repo: GitRepo
    processes: list[Process] = field(default_factory=list)

    def application(self, name: str) -> dict[str, Any]:
        with self.cluster.api_client() as api:
            body = client.CustomObjectsApi(api).get_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, "applications", name
            )
        return cast(dict[str, Any], body)

    def create_application(self, body: dict[str, Any]) -> None:
        with self.cluster.api_client() as api:
            client.CustomObjectsApi(api).create_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, "applications", body
            )

    def delete_application(self, name: str, timeout: float = 180) -> None:
        """Delete it and wait until Argo CD's finalizer has deleted what it synced."""
        with self.cluster.api_client() as api:
            custom = client.CustomObjectsApi(api)
            try:
                custom.delete_namespaced_custom_object(
                    GROUP, VERSION, NAMESPACE, "applications", name
                )
            except ApiException as error:
                if error.status == 404:
                    return
                raise
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    custom.get_namespaced_custom_object(
                        GROUP, VERSION, NAMESPACE, "applications", name
                    )
                except ApiException as error:
                    if error.status == 404:
                        return
                    raise
                time.sleep(1)
        raise AssertionError(f"Application {name} still there after {timeout:.0f}s")

    def check_running(self) -> None:
        for process in self.processes:
            assert process.alive(), f"{process.name} exited:\n{process.tail()}"

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.tail(60)}" for p in self.processes)


def install(cluster: Cluster) -> None:
    """CRDs, the namespace and the configuration Argo CD's components read, then our health
    checks the documented way."""
    apply_crds(cluster.api_client(), crds())
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        _create(
            lambda: core.create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE))
            )
        )
        # argocd-cm as Argo CD's install.yaml ships it (no data), plus the short reconciliation.
        for name, data in (
            ("argocd-cm", {"timeout.reconciliation": f"{RECONCILIATION_SECONDS}s"}),
            ("argocd-rbac-cm", {}),
            ("argocd-cmd-params-cm", {}),
        ):
            _create(
                lambda name=name, data=data: core.create_namespaced_config_map(  # type: ignore[misc]
                    NAMESPACE,
                    client.V1ConfigMap(
                        metadata=client.V1ObjectMeta(
                            name=name, labels={"app.kubernetes.io/name": name, **PART_OF}
                        ),
                        data=data,
                    ),
                )
            )
        # argocd-server would generate the signing key on its first start; the settings that
        # the controller reads are incomplete without one.
        key = base64.b64encode(secrets.token_bytes(32)).decode()
        _create(
            lambda: core.create_namespaced_secret(
                NAMESPACE,
                client.V1Secret(
                    metadata=client.V1ObjectMeta(
                        name="argocd-secret",
                        labels={"app.kubernetes.io/name": "argocd-secret", **PART_OF},
                    ),
                    string_data={"server.secretkey": key},
                ),
            )
        )
        # The `default` project argocd-server creates on its first start.
        _create(
            lambda: client.CustomObjectsApi(api).create_namespaced_custom_object(
                GROUP,
                VERSION,
                NAMESPACE,
                "appprojects",
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "AppProject",
                    "metadata": {"name": "default"},
                    "spec": {
                        "sourceRepos": ["*"],
                        "destinations": [{"server": "*", "namespace": "*"}],
                        "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
                    },
                },
            )
        )
    subprocess.run(
        [
            kubectl_binary(),
            f"--kubeconfig={cluster.kubeconfig}",
            "-n",
            NAMESPACE,
            "patch",
            "configmap",
            "argocd-cm",
            "--patch-file",
            str(HEALTH_PATCH),
        ],
        check=True,
        capture_output=True,
    )


def _create(call: Callable[[], object]) -> None:
    """Create, or leave what a previous run left (the namespace is removed at the end)."""
    try:
        call()
    except ApiException as error:
        if error.status != 409:
            raise


def uninstall(cluster: Cluster, timeout: float = 120) -> None:
    """The namespace, gone before the next run creates it again; the CRDs stay, as a cluster's
    Argo CD CRDs would. With the controller stopped, nothing would remove Argo CD's finalizer
    from an Application a failed test left, so it is taken off first."""
    with cluster.api_client() as api:
        custom = client.CustomObjectsApi(api)
        core = client.CoreV1Api(api)
        try:
            listed = custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "applications")
        except ApiException as error:
            if error.status != 404:
                raise
            listed = {"items": []}
        for app in cast(dict[str, Any], listed)["items"]:
            custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                NAMESPACE,
                "applications",
                app["metadata"]["name"],
                {"metadata": {"finalizers": None}},
            )
        try:
            core.delete_namespace(NAMESPACE)
        except ApiException as error:
            if error.status != 404:
                raise
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                core.read_namespace(NAMESPACE)
            except ApiException as error:
                if error.status == 404:
                    return
                raise
            time.sleep(1)
    raise AssertionError(f"namespace {NAMESPACE} still there after {timeout:.0f}s")


@contextmanager
def running(cluster: Cluster, binaries: Path, state: Path) -> Iterator[ArgoCD]:
    """Redis, the repo server and the application controller, and the Git repository."""
    redis = shutil.which("redis-server")
    if redis is None:
        pytest.fail("redis-server not on PATH: run `make test-deps` (Debian package redis-server)")
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        install(cluster)
        stack.callback(uninstall, cluster)
        repo = GitRepo(state / "git", logs, stack)
        argocd = ArgoCD(cluster, repo)

        def start(name: str, command: list[str], port: int, env: dict[str, str]) -> None:
            process = _start(name, command, logs, env)
            stack.callback(process.stop)
            argocd.processes.append(process)
            _wait_port(process, port)

        redis_port = free_port()
        start(
            "redis",
            [
                redis,
                "--bind",
                "127.0.0.1",
                "--port",
                str(redis_port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(state),
            ],
            redis_port,
            {},
        )
        common = {
            # The scripts and links the repo server runs by name, as in Argo CD's image.
            "PATH": f"{binaries}{os.pathsep}{os.environ['PATH']}",
            "KUBECONFIG": str(cluster.kubeconfig),
            "ARGOCD_FAKE_IN_CLUSTER": "true",
            # No commit verification: no GnuPG keyring to set up under /app/config.
            "ARGOCD_GPG_ENABLED": "false",
            "TMPDIR": str(state / "tmp"),
        }
        (state / "tmp").mkdir(exist_ok=True)
        repo_port = free_port()
        start(
            "argocd-repo-server",
            [
                str(binaries / "argocd-repo-server"),
                "--address",
                "127.0.0.1",
                "--port",
                str(repo_port),
                "--metrics-address",
                "127.0.0.1",
                "--metrics-port",
                str(free_port()),
                "--disable-tls",
                # Its default names a file under /app/config, which --disable-tls refuses to
                # be given at all.
                "--client-ca-path=",
                "--redis",
                f"127.0.0.1:{redis_port}",
                # How long the commit a branch points to is cached (default 3 minutes): without
                # a webhook, a push shows only after this and a reconciliation.
                "--revision-cache-expiration",
                f"{RECONCILIATION_SECONDS}s",
            ],
            repo_port,
            common,
        )
        metrics_port = free_port()
        start(
            "argocd-application-controller",
            [
                str(binaries / "argocd-application-controller"),
                "--namespace",
                NAMESPACE,
                "--repo-server",
                f"127.0.0.1:{repo_port}",
                "--repo-server-plaintext",
                "--redis",
                f"127.0.0.1:{redis_port}",
                # Binds 0.0.0.0 (not configurable); nothing but its own healthz is asked of it.
                "--metrics-port",
                str(metrics_port),
                "--app-resync",
                str(RECONCILIATION_SECONDS),
                "--app-resync-jitter",
                "0",
                # Each resource's health in the Application's status (Argo CD 3 keeps it in
                # Redis by default), where the test reads the reasons.
                "--persist-resource-health",
                "--status-processors",
                "4",
                "--operation-processors",
                "2",
            ],
            metrics_port,
            common,
        )
        yield argocd


class ApplicationWatch:
    """Polls an Application from a thread and keeps every distinct state it shows: the health
    Argo CD aggregates, the sync status, and each resource's health and sync status."""

    def __init__(self, argocd: ArgoCD, name: str, interval: float = 0.5) -> None:
        self.argocd, self.name, self.interval = argocd, name, interval
        #: Distinct states in the order seen.
        self.states: list[dict[str, Any]] = []
        #: The last failure to read the Application.
        self.error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"watch-{name}")

    @staticmethod
    def summary(app: dict[str, Any]) -> dict[str, Any]:
        status = app.get("status") or {}
        return {
            "health": (status.get("health") or {}).get("status"),
            "sync": (status.get("sync") or {}).get("status"),
            "revision": (status.get("sync") or {}).get("revision"),
            "operation": (status.get("operationState") or {}).get("phase"),
            "resources": {
                f"{r['kind']}/{r['name']}": (
                    (r.get("health") or {}).get("status"),
                    (r.get("health") or {}).get("message"),
                    r.get("status"),
                )
                for r in status.get("resources") or []
                if r.get("group") == "modelyard.dev"
            },
        }

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                state = self.summary(self.argocd.application(self.name))
            except Exception as error:  # not there yet, or the API server briefly away
                self.error = repr(error)
            else:
                if not self.states or self.states[-1] != state:
                    self.states.append(state)
            self._stop.wait(self.interval)

    def __enter__(self) -> ApplicationWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


# --- the scenario -------------------------------------------------------------------------------

APP = "modelyard-quickstart"
PATH = "quickstart"
MODELYARD = "modelyard.dev", "v1alpha1"
# Long enough for several comparisons with Git and resyncs.
QUIET_SECONDS = 4 * RECONCILIATION_SECONDS
TIMEOUT = 420


def _quickstart() -> dict[str, str]:
    """examples/quickstart's objects, as files of the repository Argo CD syncs. Its Kustomization
    is left out: Argo CD would run `kustomize`, which is not built here; the directory of plain
    manifests yields the same three objects."""
    return {
        f"{PATH}/{name}": (EXAMPLES / "quickstart" / name).read_text()
        for name in ("dataset.yaml", "trainingjob.yaml", "modeldeployment.yaml")
    }


def _application(repo_url: str, namespace: str) -> dict[str, Any]:
    """examples/argocd/quickstart.yaml, pointed at the test's repository and namespace."""
    app: dict[str, Any] = yaml.safe_load((EXAMPLES / "argocd" / "quickstart.yaml").read_text())
    assert app["metadata"]["name"] == APP
    app["spec"]["source"] |= {"repoURL": repo_url, "targetRevision": "main", "path": PATH}
    app["spec"]["destination"]["namespace"] = namespace
    return app


def _wait(what: str, probe: Callable[[], Any], argocd: ArgoCD, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        argocd.check_running()
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{argocd.logs()}")
        time.sleep(0.5)


def _settled(state: dict[str, Any], revision: str, health: str) -> bool:
    """The Application synced at `revision` and shows `health`."""
    return (
        state["sync"] == "Synced"
        and state["revision"] == revision
        and state["operation"] in (None, "Succeeded")
        and state["health"] == health
    )


def _degraded(states: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        s
        for s in states
        if s["health"] == "Degraded" or any(r[0] == "Degraded" for r in s["resources"].values())
    ]


def _verdicts(state: dict[str, Any]) -> tuple[Any, ...]:
    """What Argo CD decides, without the messages that explain it."""
    resources = sorted((k, v[0], v[2]) for k, v in state["resources"].items())
    return (state["health"], state["sync"], state["revision"], state["operation"], resources)


def _exists(custom: client.CustomObjectsApi, namespace: str, plural: str, name: str) -> bool:
    try:
        custom.get_namespaced_custom_object(*MODELYARD, namespace, plural, name)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def _edit(path: str, change: Callable[[dict[str, Any]], None]) -> str:
    """The quickstart file at `path`, changed."""
    document: dict[str, Any] = yaml.safe_load(_quickstart()[path])
    change(document)
    return yaml.safe_dump(document, sort_keys=False)


def quickstart_scenario(argocd: ArgoCD, cluster: Cluster, ml_namespace: str) -> dict[str, float]:
    """The scenario, on any cluster where the operator runs and the namespace holds the storage
    credentials; how long the first sync and the new data took to turn Healthy."""
    repo = argocd.repo
    api = cluster.api_client()
    custom = client.CustomObjectsApi(api)
    apps = client.AppsV1Api(api)
    core = client.CoreV1Api(api)
    timings: dict[str, float] = {}

    def status(plural: str) -> dict[str, Any]:
        body = custom.get_namespaced_custom_object(*MODELYARD, ml_namespace, plural, "iris")
        return cast(dict[str, Any], body.get("status") or {})  # type: ignore[attr-defined]

    def dataset_status() -> dict[str, Any]:
        return status("datasets")

    def served() -> dict[str, Any]:
        return status("modeldeployments")

    first = repo.push("quickstart", _quickstart())
    argocd.create_application(_application(repo.url, ml_namespace))
    try:
        with ApplicationWatch(argocd, APP) as watch:
            # 1. First sync: Progressing on the way (ingest, training, rollout), then Healthy.
            started = time.monotonic()
            _wait(
                "the first sync to turn Healthy",
                lambda: watch.states and _settled(watch.states[-1], first, "Healthy"),
                argocd,
            )
            timings["first sync → Healthy"] = time.monotonic() - started
            assert not _degraded(watch.states), _degraded(watch.states)
            assert "Progressing" in [s["health"] for s in watch.states], watch.states
            final = watch.states[-1]["resources"]
            assert {k: (v[0], v[2]) for k, v in final.items()} == {
                "Dataset/iris": ("Healthy", "Synced"),
                "TrainingJob/iris-classifier": ("Healthy", "Synced"),
                "ModelDeployment/iris": ("Healthy", "Synced"),
            }

            # 2. No perpetual diff: the operator's status, annotations and finalizer, and the
            # CRDs' defaults leave the Application Synced through several comparisons with Git,
            # and automated sync finds nothing to do.
            app = argocd.application(APP)
            history = len(app["status"].get("history") or [])
            reconciled = app["status"]["reconciledAt"]
            settled = _verdicts(watch.states[-1])
            mark = len(watch.states)
            _wait(
                "a comparison with Git after the sync",
                lambda: argocd.application(APP)["status"]["reconciledAt"] != reconciled,
                argocd,
                timeout=60,
            )
            time.sleep(QUIET_SECONDS)
            changed = [s for s in watch.states[mark:] if _verdicts(s) != settled]
            assert not changed, changed
            app = argocd.application(APP)
            assert app["status"]["sync"]["status"] == "Synced"
            assert len(app["status"].get("history") or []) == history

            # 3. New data pushed to Git: a new Dataset version, a new run, a rollout, Healthy.
            old_version = dataset_status()["version"]
            mark = len(watch.states)
            started = time.monotonic()
            second = repo.push(
                "new data: wine",
                {
                    f"{PATH}/dataset.yaml": _edit(
                        f"{PATH}/dataset.yaml",
                        lambda d: d["spec"]["source"]["builtin"].update(name="wine"),
                    )
                },
            )
            _wait(
                "the new data trained and served",
                lambda: (
                    _settled(watch.states[-1], second, "Healthy")
                    # Ready on the new run: status.model names it as soon as it is chosen.
                    and served().get("phase") == "Ready"
                    and served().get("model", {}).get("run") == "run-2"
                ),
                argocd,
            )
            timings["new data → Healthy"] = time.monotonic() - started
            assert not _degraded(watch.states[mark:]), _degraded(watch.states[mark:])
            assert "Progressing" in [s["health"] for s in watch.states[mark:]], watch.states
            assert dataset_status()["version"] != old_version
            assert served()["model"]["datasetVersion"] == dataset_status()["version"]

            # 4. A TrainingJob that cannot meet its objective: Degraded, with the reason; the
            # rest of the chain stays Healthy.
            def strict(document: dict[str, Any]) -> None:
                document["metadata"]["name"] = "iris-strict"
                document["spec"]["objective"]["minimum"] = 1.01

            third = repo.push(
                "a bar no model clears",
                {f"{PATH}/strict.yaml": _edit(f"{PATH}/trainingjob.yaml", strict)},
            )

            def strict_alone_degraded() -> dict[str, Any] | None:
                state = watch.states[-1]
                resources = dict(state["resources"])
                strict = resources.pop("TrainingJob/iris-strict", ("Missing", None, None))
                healthy = {v[0] for v in resources.values()} == {"Healthy"}
                return (
                    state
                    if state["revision"] == third and healthy and strict[0] == "Degraded"
                    else None
                )

            degraded = _wait("the strict TrainingJob Degraded", strict_alone_degraded, argocd)
            assert degraded["health"] == "Degraded"
            message = degraded["resources"]["TrainingJob/iris-strict"][1]
            assert message.startswith("ObjectiveNotMet: "), message
            fourth = repo.push("drop the strict job", {f"{PATH}/strict.yaml": None})
            _wait(
                "the strict TrainingJob pruned and the Application Healthy",
                lambda: (
                    _settled(watch.states[-1], fourth, "Healthy")
                    and not _exists(custom, ml_namespace, "trainingjobs", "iris-strict")
                ),
                argocd,
                timeout=120,
            )
            mark = len(watch.states)

            # 5. Deletion protection: the Dataset, removed from Git while the ModelDeployment
            # serves a model trained on it, is pruned by Argo CD and kept by the operator.
            fifth = repo.push("drop the dataset", {f"{PATH}/dataset.yaml": None})

            def deletion_blocked() -> dict[str, Any] | None:
                body: dict[str, Any] = custom.get_namespaced_custom_object(  # type: ignore[assignment]
                    *MODELYARD, ml_namespace, "datasets", "iris"
                )
                if not body["metadata"].get("deletionTimestamp"):
                    return None
                conditions = (body.get("status") or {}).get("conditions") or []
                return next(
                    (c for c in conditions if c["type"] == "DeletionBlocked"),
                    None,
                )

            blocked = _wait("the Dataset's deletion to wait", deletion_blocked, argocd, timeout=120)
            assert (blocked["status"], blocked["reason"]) == ("True", "InUse"), blocked
            assert "ModelDeployment iris" in blocked["message"]
            time.sleep(2 * RECONCILIATION_SECONDS)
            assert _exists(custom, ml_namespace, "datasets", "iris")
            state = watch.states[-1]
            assert state["revision"] == fifth
            assert state["resources"]["Dataset/iris"][:2] == ("Progressing", "Pending deletion")
            assert state["resources"]["ModelDeployment/iris"][0] == "Healthy"
            assert served()["phase"] == "Ready"

            # 6. Pruning: the ModelDeployment removed from Git goes, with its Deployment and
            # Service; then nothing uses the Dataset any more and its deletion completes.
            sixth = repo.push("drop the deployment", {f"{PATH}/modeldeployment.yaml": None})
            _wait(
                "the ModelDeployment, its Deployment and Service, and the Dataset gone",
                lambda: (
                    not _exists(custom, ml_namespace, "modeldeployments", "iris")
                    and not _exists(custom, ml_namespace, "datasets", "iris")
                    and not apps.list_namespaced_deployment(ml_namespace).items
                    and not core.list_namespaced_service(ml_namespace).items
                ),
                argocd,
                timeout=180,
            )
            _wait(
                "the Application synced without them",
                lambda: (
                    watch.states[-1]["revision"] == sixth
                    and watch.states[-1]["sync"] == "Synced"
                    and set(watch.states[-1]["resources"]) == {"TrainingJob/iris-classifier"}
                ),
                argocd,
                timeout=120,
            )
            assert not _degraded(watch.states[mark:]), _degraded(watch.states[mark:])
            for state in watch.states:
                print(json.dumps(state))
    finally:
        argocd.delete_application(APP)
        api.close()  # type: ignore[no-untyped-call]
    return timings


def admin_health(binaries: Path, obj: dict[str, Any], directory: Path) -> Health:
    """What Argo CD's own code (gitops-engine's GetResourceHealth, gopher-lua) says of `obj`
    with our argocd-cm patch: `argocd admin settings resource-overrides health`."""
    path = directory / f"{uuid.uuid4().hex}.json"
    path.write_text(json.dumps(obj))
    result = subprocess.run(
        [
            str(binaries / "argocd"),
            "admin",
            "settings",
            "resource-overrides",
            "health",
            str(path),
            "--argocd-cm-path",
            str(HEALTH_PATCH),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    status, _, message = result.stdout.partition("\n")
    assert status.startswith("STATUS: ") and message.startswith("MESSAGE: "), result.stdout
    # Printed with a newline after the message, which may hold newlines of its own.
    return Health(
        status.removeprefix("STATUS: "), message.removeprefix("MESSAGE: ").removesuffix("\n")
    )

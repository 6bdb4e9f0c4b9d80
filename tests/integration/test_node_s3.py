"""The local cluster's S3 server (hack/s3.sh: versitygw, what `make demo` and the e2e tier use)
keeps its objects, accounts and credentials across restarts and across the cluster's removal:
`make cluster-down` removes the state dir and stops the server, the data under
~/.cache/modelyard/s3 stays. Run here on loopback with directories and ports of its own
(MODELYARD_NODE_IP=127.0.0.1), where the cluster runs it on the node's bridge address."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.plugins.kube import HACK
from tests.plugins.operator import free_port

pytestmark = pytest.mark.integration


class Server:
    def __init__(self, root: Path) -> None:
        self.state, self.data = root / "state", root / "s3"
        self.port = free_port()
        self.env = {
            **os.environ,
            "MODELYARD_NODE_IP": "127.0.0.1",
            "MODELYARD_STATE_DIR": str(self.state),
            "MODELYARD_S3_DIR": str(self.data),
            "MODELYARD_S3_PORT": str(self.port),
            "MODELYARD_S3_ADMIN_PORT": str(free_port()),
        }

    def run(self, *args: str) -> str:
        result = subprocess.run(
            [str(HACK / "s3.sh"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stderr

    def credentials(self) -> tuple[str, str]:
        lines = (self.data / "credentials").read_text().splitlines()
        values = dict(line.split("=", 1) for line in lines)
        return values["ROOT_ACCESS_KEY_ID"], values["ROOT_SECRET_ACCESS_KEY"]

    def client(self, access_key: str, secret_key: str) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.port}",
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name="us-east-1",
        )

    def pid(self) -> str:
        return (self.state / "run" / "versitygw.pid").read_text()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path)
    try:
        yield server
    finally:
        server.run("down")


def test_objects_and_credentials_outlive_a_restart_and_the_clusters_state(server: Server) -> None:
    server.run("up")
    credentials = server.credentials()
    s3 = server.client(*credentials)
    s3.create_bucket(Bucket="modelyard")
    s3.put_object(Bucket="modelyard", Key="namespaces/demo/model.pkl", Body=b"weights")
    server.run("down")
    shutil.rmtree(server.state)  # what cluster-down removes

    server.run("up")
    assert server.credentials() == credentials
    body = server.client(*credentials).get_object(
        Bucket="modelyard", Key="namespaces/demo/model.pkl"
    )
    assert body["Body"].read() == b"weights"
    mode = stat.S_IMODE((server.data / "credentials").stat().st_mode)
    assert mode == 0o600, oct(mode)


def test_up_keeps_a_running_server(server: Server) -> None:
    server.run("up")
    pid = server.pid()
    server.run("up")
    assert server.pid() == pid


def test_a_server_checks_signatures_and_takes_added_accounts(server: Server) -> None:
    server.run("up")
    root = server.client(*server.credentials())
    root.create_bucket(Bucket="modelyard")
    canary = ("AKIAMODELYARDTEST0001", "h4/Test+Canary=0123456789abcdef")
    with pytest.raises(ClientError):
        server.client(*canary).list_objects_v2(Bucket="modelyard")
    server.run("add-account", *canary)
    server.client(*canary).put_object(Bucket="modelyard", Key="k", Body=b"v")
    assert root.get_object(Bucket="modelyard", Key="k")["Body"].read() == b"v"
    server.run("remove-account", canary[0])
    with pytest.raises(ClientError):
        server.client(*canary).list_objects_v2(Bucket="modelyard")


def test_without_the_node_address_nothing_starts(server: Server) -> None:
    server.env["MODELYARD_NODE_IP"] = "192.0.2.1"  # TEST-NET-1: never on this machine
    assert "S3 server not started" in server.run("up")
    assert not (server.state / "run" / "versitygw.pid").exists()


def test_env_gives_a_shell_the_endpoint_and_the_root_credentials(server: Server) -> None:
    server.run("up")
    shell = subprocess.run(
        [
            "bash",
            "-c",
            f'eval "$({HACK / "s3.sh"} env)"; show() {{ printf "%s\\n" "$@"; }}; '
            'show "$MODELYARD_S3_ENDPOINT" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY"',
        ],
        env=server.env,
        capture_output=True,
        text=True,
        check=True,
    )
    endpoint, access_key, secret_key = shell.stdout.splitlines()
    assert endpoint == f"http://127.0.0.1:{server.port}"
    assert (access_key, secret_key) == server.credentials()
    server.client(access_key, secret_key).list_buckets()

"""PostgreSQL for the tests: Debian's server (`make test-deps`), a fresh cluster per session.

`initdb` makes the cluster in a temporary directory and `postgres` serves it on a free loopback
port, with its unix socket in that directory, until the session ends: nothing of the system's
own clusters (/etc/postgresql) is used or started. PostgreSQL refuses to run as root, so under
root it runs as the `postgres` user the package creates.

Connections over TCP need a password (scram-sha-256), so a wrong one is refused as it would be
by a real database; the tests connect as the superuser the cluster was made with.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

USER = "modelyard"
DATABASE = "postgres"  # the one initdb makes
START_SECONDS = 60


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    database: str

    def uri(
        self, user: str | None = None, password: str | None = None, host: str | None = None
    ) -> str:
        """A libpq URI over TCP, as a Secret would hold it."""
        name, secret = user or self.user, self.password if password is None else password
        return (
            f"postgresql://{quote(name, safe='')}:{quote(secret, safe='')}"
            f"@{host or self.host}:{self.port}/{self.database}"
        )

    def run(self, *statements: str) -> None:
        """Statements as the superuser, each in its own transaction (setup and changes)."""
        import adbc_driver_postgresql.dbapi as pg

        with (
            pg.connect(self.uri(), autocommit=True) as connection,
            connection.cursor() as cursor,
        ):
            for statement in statements:
                cursor.execute(statement)

    def query(self, statement: str) -> list[tuple[Any, ...]]:
        import adbc_driver_postgresql.dbapi as pg

        with pg.connect(self.uri()) as connection, connection.cursor() as cursor:
            cursor.execute(statement)
            return list(cursor.fetchall())


def _bindir() -> Path:
    """The newest server Debian installed (/usr/lib/postgresql/<major>/bin)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if not found:
        pytest.fail("no PostgreSQL server: run `make test-deps` (Debian package postgresql)")
    return found[-1].parent


def _as_server_user() -> tuple[dict[str, Any], Callable[[Path], None]]:
    """Popen arguments that drop root to `postgres`, and how to hand it a directory."""
    if os.geteuid() != 0:
        return {}, lambda path: None
    account = pwd.getpwnam("postgres")

    def give(path: Path) -> None:
        os.chown(path, account.pw_uid, account.pw_gid)

    drop = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    return drop, give


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_postgres(
    host: str = "127.0.0.1", clients: str | None = None
) -> Iterator[PostgresServer]:
    """A new cluster served on `host` at a free port, stopped and removed when the context ends.
    `clients`: a network (CIDR) besides loopback whose hosts may log in with a password, such as
    the local cluster's pods."""
    bindir = _bindir()
    drop, give = _as_server_user()
    # Not pytest's tmp_path: its parents are private to root, where `postgres` cannot reach.
    work = Path(tempfile.mkdtemp(prefix="modelyard-pg-"))
    give(work)
    data, password_file, log = work / "data", work / "password", work / "postgres.log"
    password = secrets.token_urlsafe(18)
    password_file.write_text(password + "\n")
    give(password_file)
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    try:
        subprocess.run(
            [
                str(bindir / "initdb"),
                "--pgdata",
                str(data),
                "--username",
                USER,
                "--pwfile",
                str(password_file),
                "--auth-local",
                "trust",
                "--auth-host",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            env=env,
            cwd=work,
            **drop,
        )
        if clients is not None:
            with (data / "pg_hba.conf").open("a") as rules:
                rules.write(f"host all all {clients} scram-sha-256\n")
        port = _free_port(host)
        with log.open("w") as output:
            give(log)
            process = subprocess.Popen(
                [
                    str(bindir / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(port),
                    "-k",
                    str(work),
                    "-c",
                    f"listen_addresses={host}",
                    # A throwaway cluster: durability only costs time here.
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=work,
                **drop,
            )
        try:
            _wait_ready(bindir, work, port, process, log)
            yield PostgresServer(host, port, USER, password, DATABASE)
        finally:
            # SIGINT is PostgreSQL's fast shutdown: sessions are ended, not waited for.
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _wait_ready(
    bindir: Path, socket_dir: Path, port: int, process: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        ready = subprocess.run(
            [str(bindir / "pg_isready"), "-q", "-h", str(socket_dir), "-p", str(port)],
            check=False,
        )
        if ready.returncode == 0:
            return
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


def main() -> None:
    """`python -m tests.plugins.postgres --host 10.244.0.1 --clients 10.244.0.0/24`: a throwaway
    server for trying the sql source on the local cluster (examples/production-quality), until
    interrupted."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--clients", help="a network (CIDR) whose hosts may log in")
    args = parser.parse_args()
    with running_postgres(args.host, args.clients) as server:
        print(server.uri(), flush=True)
        with suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()

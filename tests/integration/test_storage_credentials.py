"""Credentials come from the environment each time a Storage is made, as for a new process."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.storage.client import Storage
from modelyard.storage.config import StorageConfig
from tests.plugins.s3 import running_versitygw

pytestmark = pytest.mark.integration


def test_a_storage_signs_with_the_credentials_the_environment_has_now(
    storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage.client.list_buckets()  # one server's credentials, resolved first
    with running_versitygw(tmp_path / "data") as other:
        for key, value in other.env("second").items():
            monkeypatch.setenv(key, value)
        Storage(StorageConfig.from_env(other.env("second"))).ensure_bucket("second")

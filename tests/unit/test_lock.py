"""The images install from one lock (uv.lock) through per-image exports: the lock follows
pyproject.toml, the exports follow the lock, and the images that share a library get one version
of it (a model the trainer's scikit-learn pickled is loaded by the same one in the server)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

IMAGES = REPO / "images"
# The images' interpreter: the base's (bookworm's python3) or python:3.11-slim, on x86_64 Linux.
IMAGE_ENVIRONMENT = {
    **default_environment(),
    "python_version": "3.11",
    "python_full_version": "3.11.2",
    "implementation_name": "cpython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
}
ML_LIBRARIES = ("scikit-learn", "numpy", "scipy", "joblib", "threadpoolctl")
# What each image runs: its entry points and the modules they load on demand.
ENTRY_MODULES = {
    "operator": ["modelyard.cli", "modelyard.controllers.runner"],
    "trainer": [
        "modelyard.workloads.__main__",
        "modelyard.workloads.ingest.run",
        "modelyard.workloads.training.run",
    ],
    "server": [
        "modelyard.workloads.__main__",
        *(
            f"modelyard.workloads.serving.{p.stem}"
            for p in (REPO / "operator/modelyard/workloads/serving").glob("*.py")
        ),
    ],
}
# Imports them in this virtualenv, which has every extra, with the modules of the distributions
# the image does not install hidden from every finder: an import fails, and a probe
# (importlib.util.find_spec) finds nothing, as in the image.
IMPORT_AS_IN_IMAGE = """
import importlib, importlib.metadata, sys
from packaging.utils import canonicalize_name
allowed = set(sys.argv[1].split(","))
owners = importlib.metadata.packages_distributions()

def hidden(name):
    top = name.partition(".")[0]
    found = {canonicalize_name(d) for d in owners.get(top, [])}
    return bool(found) and top != "modelyard" and not found & allowed

class Hiding:
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        return None if hidden(name) else self.finder.find_spec(name, path, target)

    def __getattr__(self, attribute):
        return getattr(self.finder, attribute)

sys.meta_path[:] = [Hiding(finder) for finder in sys.meta_path]
for module in sys.argv[2:]:
    importlib.import_module(module)
"""


def pins(image: str) -> dict[str, str]:
    """Name → version of what pip installs from images/<image>/requirements.txt in the image,
    checking that each applicable line is an exact pin with hashes."""
    text = (IMAGES / image / "requirements.txt").read_text().replace("\\\n", " ")
    found: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        spec, *hashes = line.split(" --hash=")
        assert hashes, f"{image}: no hash for {spec}"
        requirement = Requirement(spec)
        if requirement.marker is not None and not requirement.marker.evaluate(
            dict(IMAGE_ENVIRONMENT)
        ):
            continue
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{image}: {spec} is not an exact pin"
        assert requirement.name not in found, f"{image}: {requirement.name} pinned twice"
        found[requirement.name] = specifier.version
    return found


def test_lock_follows_pyproject_and_the_exports_follow_the_lock() -> None:
    """Offline: uv checks the lock against pyproject's dependencies; the exports are compared
    with what the lock gives now. A dependency changed without `make lock` fails here."""
    result = subprocess.run(
        [str(REPO / "hack" / "lock.sh"), "check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("library", ML_LIBRARIES)
def test_trainer_and_server_install_one_version_of_each_shared_library(library: str) -> None:
    trainer, server = pins("trainer"), pins("server")
    assert library in trainer and library in server
    assert trainer[library] == server[library]


def test_images_agree_on_every_library_they_share() -> None:
    images = {
        path.parent.name: pins(path.parent.name) for path in IMAGES.glob("*/requirements.txt")
    }
    assert {"operator", "trainer", "server"} <= images.keys()
    versions: dict[str, set[str]] = {}
    for found in images.values():
        for name, version in found.items():
            versions.setdefault(name, set()).add(version)
    assert {name: v for name, v in versions.items() if len(v) > 1} == {}


def test_the_server_installs_no_training_only_library() -> None:
    """What the extras say: pyarrow is the trainer's alone."""
    assert "pyarrow" in pins("trainer")
    assert "pyarrow" not in pins("server")


def test_each_dockerfile_installs_its_own_export_before_the_code() -> None:
    for image in ("operator", "trainer", "server"):
        lines = (IMAGES / image / "Dockerfile").read_text().splitlines()
        export = lines.index(f"COPY images/{image}/requirements.txt /tmp/requirements.txt")
        code = lines.index("COPY operator ./operator")
        assert export < code, image
        assert any("--require-hashes -r /tmp/requirements.txt" in line for line in lines)


@pytest.mark.parametrize("image", sorted(ENTRY_MODULES))
def test_each_image_installs_what_its_entry_points_import(image: str) -> None:
    """The operator once imported boto3 (through the storage layout) without installing it."""
    allowed = {canonicalize_name(name) for name in pins(image)}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            IMPORT_AS_IN_IMAGE,
            ",".join(sorted(allowed)),
            *ENTRY_MODULES[image],
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr.strip().splitlines()[-1]

"""The images as built from this tree: no larger than their ceilings (tests/bench/images:
CEILINGS_MB; unpacked, the layers a node imports), and, in each, what it runs still imports and
works with what the build removed gone (images/slim-venv.sh; the runtime base without pip, venv,
package manager or shell). Commands run in the images through `hack/images.sh run` (buildah,
chroot isolation): no node needed, but root, as for every image build."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.bench.images import CEILINGS_MB, IMAGES_SH, MB, ImageSize, build, measure

pytestmark = pytest.mark.e2e

PYTHON = "/opt/venv/bin/python"

# In every image: what the runtime stage must not carry. (The standard library's venv and distutils
# modules stay, but without ensurepip and pip nothing installs with them.)
NOTHING_TO_INSTALL_WITH = """
import importlib.util, shutil
for module in ("pip", "setuptools", "wheel", "ensurepip"):
    assert importlib.util.find_spec(module) is None, module
for program in ("sh", "bash", "apt-get", "dpkg", "perl"):
    assert shutil.which(program) is None, program
"""

# The server: every estimator a TrainingJob may name (the trainer's allowlist), fitted, pickled and
# loaded as the server loads models, LightGBM's through its OpenMP runtime; S3 clients with the
# service descriptions left and the credential chain's.
SERVER = """
import importlib, pickle
import numpy as np
import boto3, botocore.session
import modelyard.workloads.serving.app, modelyard.workloads.serving.runtime  # noqa: F401
import modelyard.workloads.training.transformers  # noqa: F401 (in pickled pipelines)
from modelyard.api.trainingjob import EstimatorClass
x = np.random.default_rng(0).random((60, 4)); y = (x[:, 0] > 0.5).astype(int)
for path in EstimatorClass:
    module, _, name = path.value.rpartition(".")
    estimator = getattr(importlib.import_module(module), name)()
    if module == "lightgbm":
        estimator.set_params(n_estimators=3, verbose=-1)
    pickle.loads(pickle.dumps(estimator.fit(x, y))).predict(x[:2])
session = botocore.session.get_session()
for service in ("s3", "sts", "sso", "sso-oidc", "signin"):
    session.create_client(service, region_name="eu-west-1")
assert boto3.client("s3", region_name="eu-west-1").meta.endpoint_url.startswith("https://s3.")
"""

# The trainer: the toy datasets stored at build time (read without scikit-learn), ingest (pyarrow,
# DuckDB, the PostgreSQL ADBC driver), training, the report's plots, the Dask engine (its workers
# run this image's `dask` command) and S3.
TRAINER = """
import io, sys
from modelyard.api.dataset import BuiltinName
from modelyard.workloads.ingest.builtin import STORED, builtin_table
assert all((STORED / f"{name.value}.parquet").is_file() for name in BuiltinName), STORED
assert builtin_table(BuiltinName.IRIS).num_rows == 150 and "sklearn" not in sys.modules
import boto3
import adbc_driver_postgresql.dbapi, duckdb, lightgbm.dask  # noqa: F401
import dask.dataframe, distributed.cli.dask_worker, distributed.cli.dask_scheduler  # noqa: F401
import pyarrow as pa, pyarrow.dataset, pyarrow.parquet as pq  # noqa: F401
import modelyard.workloads.ingest.run, modelyard.workloads.training.run  # noqa: F401
from modelyard.workloads.training.fonts import STORED as FONTS
assert [p.name for p in FONTS.glob("fontlist-*.json")], FONTS
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
buffer = io.BytesIO()
pq.write_table(pa.table({"x": [1, 2]}), buffer)
assert pq.read_table(pa.BufferReader(buffer.getvalue())).num_rows == 2
assert duckdb.sql("select 42").fetchall() == [(42,)]
plt.plot([0, 1]); plt.savefig(io.BytesIO(), format="png")
boto3.client("s3", region_name="eu-west-1")
"""

OPERATOR = """
import importlib.util
import kopf, kubernetes, cryptography.x509  # noqa: F401
import modelyard.cli, modelyard.controllers  # noqa: F401
assert importlib.util.find_spec("kubernetes.aio") is None, "the client's asyncio twin is unused"
"""

CHECKS = {"server": SERVER, "trainer": TRAINER, "operator": OPERATOR}


def _root() -> None:
    if os.geteuid() != 0:
        pytest.skip("hack/images.sh needs root (buildah's storage)")


@pytest.fixture(scope="module")
def built() -> None:
    _root()
    build(sorted(CEILINGS_MB))


@pytest.fixture(scope="module")
def sizes(built: None) -> dict[str, ImageSize]:
    return measure(sorted(CEILINGS_MB))


@pytest.mark.parametrize("name", sorted(CEILINGS_MB))
def test_image_is_no_larger_than_its_ceiling(sizes: dict[str, ImageSize], name: str) -> None:
    size = sizes[name]
    layers = " + ".join(f"{unpacked / MB:.1f}" for unpacked, _ in size.layers)
    assert size.unpacked <= CEILINGS_MB[name] * MB, (
        f"{size.image}: {size.unpacked / MB:.1f} MB unpacked ({layers}), "
        f"ceiling {CEILINGS_MB[name]} MB"
    )


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_image_runs_what_it_imports_without_what_was_removed(built: None, name: str) -> None:
    result = subprocess.run(
        [str(IMAGES_SH), "run", name, PYTHON, "-c", NOTHING_TO_INSTALL_WITH + CHECKS[name]],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]

"""The toy datasets the trainer image stores at build time are the tables scikit-learn gives, and
reading a stored one leaves scikit-learn unimported (the point of storing them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modelyard.api.dataset import BuiltinName
from modelyard.workloads.ingest.builtin import builtin_table, from_sklearn, store


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("builtin")
    store(directory)
    return directory


@pytest.mark.parametrize("name", list(BuiltinName))
def test_a_stored_dataset_is_the_table_scikit_learn_gives(name: BuiltinName, stored: Path) -> None:
    assert builtin_table(name, stored).equals(from_sklearn(name), check_metadata=False)


def test_reading_a_stored_dataset_does_not_import_scikit_learn(stored: Path) -> None:
    program = (
        "import sys\n"
        "from pathlib import Path\n"
        "from modelyard.api.dataset import BuiltinName\n"
        "from modelyard.workloads.ingest.builtin import builtin_table\n"
        f"table = builtin_table(BuiltinName.IRIS, Path({str(stored)!r}))\n"
        "print(table.num_rows, 'sklearn' in sys.modules)\n"
    )
    ran = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["150", "False"]


def test_without_stored_files_scikit_learn_gives_them(tmp_path: Path) -> None:
    table = builtin_table(BuiltinName.WINE, tmp_path)
    assert table.num_rows == 178 and table.column_names[-1] == "target"

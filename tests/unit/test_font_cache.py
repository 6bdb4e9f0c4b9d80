"""The trainer's stored font list spares matplotlib its scan of every font in a fresh pod."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCANNED = "generated new fontManager"  # what matplotlib logs when it scanned the fonts


def _import_font_manager(cache: Path, seed_from: Path | None) -> str:
    code = (
        "import logging; logging.basicConfig(level=logging.INFO)\n"
        "from pathlib import Path\n"
        "from modelyard.workloads.training import fonts\n"
        + (f"fonts.seed_cache(Path({str(seed_from)!r}))\n" if seed_from else "")
        + "import matplotlib.font_manager\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "MPLCONFIGDIR": str(cache)},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stderr


def test_a_fresh_cache_seeded_from_the_stored_list_is_not_scanned_again(tmp_path: Path) -> None:
    stored = tmp_path / "stored"
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"from pathlib import Path; from modelyard.workloads.training "
            f"import fonts; fonts.store(Path({str(stored)!r}))",
        ],
        check=True,
    )
    (font_list,) = stored.glob("fontlist-*.json")
    assert SCANNED in _import_font_manager(tmp_path / "unseeded", None)
    seeded = tmp_path / "seeded"
    assert SCANNED not in _import_font_manager(seeded, stored)
    assert (seeded / font_list.name).read_bytes() == font_list.read_bytes()

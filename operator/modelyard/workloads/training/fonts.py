"""Matplotlib's font list, made once when the trainer image is built.

The first time matplotlib draws text in a cache directory, it opens every font file it can find
and writes what it learned there. A training pod's only writable place is its empty /tmp, so
every run paid for that scan (0.1 s, a tenth of the quickstart's report). The trainer image
keeps the list beside this module (`python -m modelyard.workloads.training.fonts` at build), and
a run copies it into matplotlib's cache directory before matplotlib looks there. Without the
stored list (a development checkout) matplotlib makes its own, as before; should the list name a
font the image lacks, matplotlib finds it missing and makes a new one itself.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

STORED = Path(__file__).with_name("matplotlib_fonts")


def seed_cache(stored: Path = STORED) -> None:
    """Copy the stored font list into matplotlib's cache directory, unless one is there."""
    import matplotlib

    cache = Path(matplotlib.get_cachedir())
    for font_list in stored.glob("fontlist-*.json"):
        if not (cache / font_list.name).exists():
            shutil.copyfile(font_list, cache / font_list.name)


def store(directory: Path = STORED) -> None:
    """Have matplotlib write its font list into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["MPLCONFIGDIR"] = str(directory)
    import matplotlib.font_manager  # noqa: F401  (its import scans the fonts and writes the list)


if __name__ == "__main__":
    store()

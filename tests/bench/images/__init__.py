"""Image sizes: what `hack/images.sh size` measures, and the ceilings the images are held to
(tests/e2e/test_images.py checks them; `python -m tests.bench.images` reports them)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
IMAGES_SH = ROOT / "hack" / "images.sh"
MB = 1_000_000

# Ceilings on the unpacked size (the layer tars a node imports), in MB of 10^6 bytes. server and
# operator: issue 19's goals. trainer: 606 MB measured after the cheap cuts (2026-12-05), plus
# 14 MB of room for patch releases of its ~50 dependencies; what is left is what it imports:
# pyarrow (~100 MB), DuckDB (~70 MB), scipy, pandas, scikit-learn, matplotlib, numpy.
CEILINGS_MB = {"server": 300, "operator": 250, "trainer": 620}


@dataclass(frozen=True)
class ImageSize:
    image: str
    unpacked: int
    compressed: int
    #: (unpacked, compressed) bytes of each layer, base first.
    layers: tuple[tuple[int, int], ...]


def build(names: Sequence[str]) -> None:
    """images/<name>/Dockerfile built from this tree (buildah's layer cache makes it quick when
    nothing changed); needs root, as images.sh does."""
    subprocess.run([str(IMAGES_SH), "build", *names], check=True)


def measure(names: Sequence[str]) -> dict[str, ImageSize]:
    """The built images' sizes, by images/ directory name."""
    out = subprocess.run(
        [str(IMAGES_SH), "size", *names], check=True, capture_output=True, text=True
    ).stdout
    sizes = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {
        name: ImageSize(
            image=size["image"],
            unpacked=size["unpacked"],
            compressed=size["compressed"],
            layers=tuple((u, c) for u, c in size["layers"]),
        )
        for name, size in zip(names, sizes, strict=True)
    }

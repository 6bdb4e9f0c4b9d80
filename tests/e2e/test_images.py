"""The images' sizes against their ceilings (tests/bench/images: CEILINGS_MB), measured on the
images built from this tree: the unpacked layers a node imports."""

from __future__ import annotations

import os

import pytest

from tests.bench.images import CEILINGS_MB, MB, ImageSize, build, measure

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sizes() -> dict[str, ImageSize]:
    if os.geteuid() != 0:
        pytest.skip("hack/images.sh needs root (buildah's storage)")
    build(sorted(CEILINGS_MB))
    return measure(sorted(CEILINGS_MB))


@pytest.mark.parametrize("name", sorted(CEILINGS_MB))
def test_image_is_no_larger_than_its_ceiling(sizes: dict[str, ImageSize], name: str) -> None:
    size = sizes[name]
    layers = " + ".join(f"{unpacked / MB:.1f}" for unpacked, _ in size.layers)
    assert size.unpacked <= CEILINGS_MB[name] * MB, (
        f"{size.image}: {size.unpacked / MB:.1f} MB unpacked ({layers}), "
        f"ceiling {CEILINGS_MB[name]} MB"
    )

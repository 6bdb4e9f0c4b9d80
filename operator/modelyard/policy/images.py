"""Which images a spec.image may name. Workload images run with the storage credentials and
write the results the operator records, so only images the operator's configuration allows run:
its own defaults, and the repositories (optionally pinned to a digest) the cluster admin lists."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImageReference:
    """`[registry/]path[:tag][@sha256:…]`, split into the repository and its digest."""

    repository: str
    digest: str | None

    @classmethod
    def parse(cls, reference: str) -> ImageReference:
        name, _, digest = reference.partition("@")
        # A colon after the last slash starts the tag; one before it is a registry's port.
        slash = name.rfind("/")
        colon = name.rfind(":")
        repository = name[:colon] if colon > slash else name
        return cls(repository, digest or None)


def image_allowed(image: str, defaults: tuple[str, ...], allowed: tuple[str, ...]) -> bool:
    """Whether `image` is one of the operator's `defaults` or matches an `allowed` entry: a
    repository (any tag or digest) or a repository@digest (that digest only)."""
    if image in defaults:
        return True
    wanted = ImageReference.parse(image)
    for entry in allowed:
        rule = ImageReference.parse(entry)
        if rule.repository != wanted.repository:
            continue
        if rule.digest is None or rule.digest == wanted.digest:
            return True
    return False


def image_refusal(image: str | None, default: str, allowed: tuple[str, ...]) -> str | None:
    """Why a spec's `image` may not run (naming the field), or None: no image, or an allowed one."""
    if image is None or image_allowed(image, (default,), allowed):
        return None
    return f"spec.image: {image} is not an image this operator runs (workloads.allowedImages)"

"""KIND/NAME arguments as kubectl reads them: `mdep/iris`, `modeldeployment/iris`,
`modeldeployments.modelyard.dev/iris`, `ModelDeployment/iris`."""

from __future__ import annotations

from dataclasses import dataclass

from modelyard.api import GROUP, KINDS, VERSION
from modelyard.api.common import KindInfo
from modelyard.cli.errors import UsageError


def _spellings(info: KindInfo) -> set[str]:
    words = {info.kind.lower(), info.plural, info.singular, *info.short_names}
    qualified = {f"{word}.{GROUP}" for word in (info.plural, info.singular, info.kind.lower())}
    versioned = {f"{word}.{VERSION}.{GROUP}" for word in (info.plural, info.singular)}
    return words | qualified | versioned


_BY_SPELLING: dict[str, KindInfo] = {
    spelling: kind.info for kind in KINDS for spelling in _spellings(kind.info)
}
KNOWN = ", ".join(f"{k.info.singular} ({', '.join(k.info.short_names)})" for k in KINDS)


@dataclass(frozen=True)
class Ref:
    """One object, by kind and name."""

    info: KindInfo
    name: str

    def __str__(self) -> str:
        return f"{self.info.singular}/{self.name}"


def kind_of(word: str) -> KindInfo:
    info = _BY_SPELLING.get(word.lower())
    if info is None:
        raise UsageError(f"unknown resource type {word!r}: expected one of {KNOWN}")
    return info


def parse_ref(text: str, *allowed: str) -> Ref:
    """`KIND/NAME`; `allowed` lists the kinds (e.g. "ModelDeployment") the command takes."""
    word, slash, name = text.partition("/")
    if not slash or not word or not name or "/" in name:
        raise UsageError(f"expected KIND/NAME such as mdep/iris, got {text!r}")
    info = kind_of(word)
    if allowed and info.kind not in allowed:
        wanted = " or ".join(kind_of(kind).singular for kind in allowed)
        raise UsageError(f"{text}: this command takes a {wanted}, not a {info.singular}")
    return Ref(info, name)

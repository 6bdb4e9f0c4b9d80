"""How the command prints: tables, JSON or YAML, with colour only for a person at a terminal."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

import yaml

Format = Literal["table", "json", "yaml"]
FORMATS: tuple[Format, ...] = ("table", "json", "yaml")

_CODES = {"red": "31", "green": "32", "yellow": "33", "bold": "1", "dim": "2"}
_GOOD = frozenset({"Ready", "Succeeded", "True"})


def tone(word: str) -> str:
    """The colour of a phase or a Ready status: green when done, red when failed, else yellow
    (Ready=False is the normal state of a resource still at work)."""
    return "green" if word in _GOOD else "red" if word == "Failed" else "yellow"


def colour_wanted(stream: TextIO) -> bool:
    """https://no-color.org: NO_COLOR (when not empty) turns colour off; so does a pipe."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


@dataclass(frozen=True)
class Painter:
    enabled: bool

    @classmethod
    def for_stream(cls, stream: TextIO) -> Painter:
        return cls(colour_wanted(stream))

    def paint(self, text: str, colour: str | None) -> str:
        if not self.enabled or colour is None or not text:
            return text
        return f"\033[{_CODES[colour]}m{text}\033[0m"


@dataclass(frozen=True)
class Cell:
    text: str
    colour: str | None = None


def table(headers: Sequence[str], rows: Sequence[Sequence[Cell | str]], painter: Painter) -> str:
    """Columns padded to their widest cell as kubectl pads them; colour does not count."""
    cells = [[c if isinstance(c, Cell) else Cell(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell.text))
    lines = ["   ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in cells:
        padded = [
            painter.paint(cell.text, cell.colour) + " " * (width - len(cell.text))
            for cell, width in zip(row, widths, strict=True)
        ]
        lines.append("   ".join(padded).rstrip())
    return "\n".join(lines)


def dump(document: Any, output: Format) -> str:
    """A document as JSON or YAML, for programs."""
    if output == "json":
        return json.dumps(document, indent=2, sort_keys=False)
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True).rstrip("\n")


def age(timestamp: str | None, now: datetime | None = None) -> str:
    """kubectl's short ages: 45s, 12m, 3h, 5d."""
    if not timestamp:
        return "<unknown>"
    then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def short_digest(digest: str | None) -> str:
    """sha256:1a2b3c4d5e6f…: enough to tell versions apart in a table."""
    if not digest:
        return ""
    return digest[: len("sha256:") + 12] + "…" if len(digest) > 19 else digest

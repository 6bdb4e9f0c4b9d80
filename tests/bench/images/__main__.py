"""`python -m tests.bench.images [--quick] [--no-build]`: the sizes of the server, operator and
trainer images built from this tree, unpacked (the layer tars a node imports) and compressed
(the same layers gzipped, as a registry stores them), against their ceilings.

Builds the images first (`hack/images.sh build`: quick when buildah's layer cache holds them) and
measures them with `hack/images.sh size`; both need root. --quick changes nothing (the suite is
quick), so that `make bench-quick` runs it too. Writes docs/benchmarks/images.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

from tests.bench.images import CEILINGS_MB, MB, ImageSize, build, measure

OUT = Path(__file__).resolve().parents[3] / "docs" / "benchmarks"


def report(command: str, sizes: dict[str, ImageSize]) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    met = sum(size.unpacked <= CEILINGS_MB[name] * MB for name, size in sizes.items())
    lines = [
        "# Image sizes",
        "",
        f"`{command}`, {when}: the images `hack/images.sh build` makes from this tree,",
        "measured by `hack/images.sh size`. Unpacked: the layer tars a node imports (what",
        "`docker images` calls the size); compressed: the same layers gzipped, as a registry",
        "stores them and a node pulls them. MB = 10^6 bytes. Layers: the runtime base first,",
        "then what each Dockerfile's runtime stage copies (the server's and trainer's OpenMP",
        "runtime, the venv, the package).",
        "",
        f"Ceilings met: {met} / {len(sizes)}.",
        "",
        "| image | unpacked MB | compressed MB | layers, unpacked MB | ceiling MB | verdict |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, size in sizes.items():
        ceiling = CEILINGS_MB[name]
        verdict = "met" if size.unpacked <= ceiling * MB else "**missed**"
        layers = " + ".join(f"{unpacked / MB:.1f}" for unpacked, _ in size.layers)
        lines.append(
            f"| {name} | {size.unpacked / MB:.1f} | {size.compressed / MB:.1f} | {layers} "
            f"| {ceiling} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.images")
    parser.add_argument("--quick", action="store_true", help="the same run (it is quick)")
    parser.add_argument("--no-build", action="store_true", help="measure the images as built")
    parser.add_argument("--output", type=Path, default=OUT)
    args = parser.parse_args(argv)
    arguments = sys.argv[1:] if argv is None else argv
    command = f"python -m tests.bench.images {shlex.join(arguments)}".strip()
    names = list(CEILINGS_MB)
    if not args.no_build:
        build(names)
    text = report(command, measure(names))
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "images.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The Argo CD health checks in gitops/argocd/: where they are, how argocd-cm embeds them, and a
way to run one in a real Lua 5.1 interpreter (Argo CD runs them in gopher-lua, a Lua 5.1).

`python -m tests.unit.argocd_health` rewrites gitops/argocd/argocd-cm-patch.yaml from the scripts.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import REPO

ARGOCD = REPO / "gitops" / "argocd"
HEALTH = ARGOCD / "health"
PATCH = ARGOCD / "argocd-cm-patch.yaml"
KINDS = ("Dataset", "TrainingJob", "ModelDeployment")
LUA = "lua5.1"


def script(kind: str) -> Path:
    return HEALTH / f"{kind.lower()}.lua"


def config_key(kind: str) -> str:
    return f"resource.customizations.health.modelyard.dev_{kind}"


def render_cm_patch() -> str:
    """The argocd-cm patch: each script verbatim, as a literal block under its key."""
    lines = [
        "# Generated from gitops/argocd/health/*.lua by `python -m tests.unit.argocd_health`;",
        "# a unit test fails when it drifts. Apply with:",
        "#   kubectl -n argocd patch configmap argocd-cm --patch-file argocd-cm-patch.yaml",
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        "  name: argocd-cm",
        "  namespace: argocd",
        "  labels:",
        "    app.kubernetes.io/name: argocd-cm",
        "    app.kubernetes.io/part-of: argocd",
        "data:",
    ]
    for kind in KINDS:
        lines.append(f"  {config_key(kind)}: |")
        lines.extend(
            f"    {line}" if line else "" for line in script(kind).read_text().splitlines()
        )
    return "\n".join(lines) + "\n"


def lua_literal(value: Any) -> str:
    """A Lua expression for a JSON-like value; null becomes an absent key, as in Argo CD."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # Lua 5.1 strings are bytes: keep printable ASCII, write every other byte as \ddd.
        escaped = "".join(
            chr(byte) if 32 <= byte < 127 and byte not in b'"\\' else f"\\{byte}"
            for byte in value.encode()
        )
        return f'"{escaped}"'
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(item) for item in value) + "}"
    if isinstance(value, dict):
        fields = (f"[{lua_literal(str(k))}] = {lua_literal(v)}" for k, v in value.items())
        return "{" + ", ".join(fields) + "}"
    raise TypeError(f"no Lua literal for {type(value).__name__}")


@dataclass(frozen=True)
class Health:
    status: str
    message: str


def find_lua() -> str | None:
    return shutil.which(LUA)


def assess(kind: str, obj: dict[str, Any], lua: str) -> Health:
    """Run the kind's health script over `obj` the way Argo CD does: `obj` global, `hs` returned."""
    program = "\n".join(
        [
            f"obj = {lua_literal(obj)}",
            f"local check = assert(loadfile({lua_literal(str(script(kind)))}))",
            "local hs = check()",
            'io.write(tostring(hs.status), "\\n", tostring(hs.message))',
        ]
    )
    result = subprocess.run(
        [lua, "-"], input=program, capture_output=True, text=True, check=False, timeout=30
    )
    assert result.returncode == 0, result.stderr
    status, _, message = result.stdout.partition("\n")
    return Health(status, message)


if __name__ == "__main__":
    PATCH.write_text(render_cm_patch())
    print(f"wrote {PATCH.relative_to(REPO)}")

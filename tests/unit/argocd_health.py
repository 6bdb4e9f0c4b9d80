"""The Argo CD health checks in gitops/argocd/: where they are, how argocd-cm embeds them, a way
to run one in a real Lua 5.1 interpreter (Argo CD runs them in gopher-lua, a Lua 5.1), and what
recorded status sequences must look like through them.

`python -m tests.unit.argocd_health` rewrites gitops/argocd/argocd-cm-patch.yaml from the scripts.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import REPO
from tests.plugins.status_recording import Recorded, Step

ARGOCD = REPO / "gitops" / "argocd"
HEALTH = ARGOCD / "health"
PATCH = ARGOCD / "argocd-cm-patch.yaml"
KINDS = ("Dataset", "TrainingJob", "ModelDeployment")
LUA = "lua5.1"
# The line where the part of each script that is the same for the three kinds begins.
SHARED_MARKER = "-- Shared by the three Modelyard health checks"


def script(kind: str) -> Path:
    return HEALTH / f"{kind.lower()}.lua"


def shared_part(kind: str) -> str:
    """The script from the shared marker on (Argo CD takes one whole script per kind, so the
    common logic is in each file)."""
    text = script(kind).read_text()
    start = text.find(SHARED_MARKER)
    assert start > 0, f"{script(kind).name} has no line starting with {SHARED_MARKER!r}"
    return text[start:]


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


# What Argo CD gives a health script (util/lua/lua.go): the base, table and package libraries
# and a safe `os`, not `string`, `math` or `io`; strings have no methods without the string
# library. The runner takes the rest away from the script, so one that relies on them fails
# here as it would in Argo CD.
_SANDBOX = """
local base = {}
for _, name in ipairs({"assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall",
    "print", "rawequal", "rawget", "rawset", "select", "setmetatable", "tonumber", "tostring",
    "type", "unpack", "xpcall", "_VERSION"}) do
  base[name] = _G[name]
end
base.table = table
base.os = {time = os.time, date = os.date, clock = os.clock, difftime = os.difftime}
local write = io.write
getmetatable("").__index = nil
"""


def assess_all(kind: str, objects: list[dict[str, Any]], lua: str) -> list[Health]:
    """Run the kind's health script over each object the way Argo CD does (`obj` global, the
    returned table read), in one interpreter."""
    program = [_SANDBOX, f"local check = assert(loadfile({lua_literal(str(script(kind)))}))"]
    for obj in objects:
        program += [
            "do",
            "  local env = {}",
            "  for name, value in pairs(base) do env[name] = value end",
            f"  env.obj = {lua_literal(obj)}",
            "  local hs = setfenv(check, env)()",
            "  local status, message = tostring(hs.status), tostring(hs.message)",
            '  write(#status, " ", status, #message, " ", message)',
            "end",
        ]
    result = subprocess.run(
        [lua, "-"], input="\n".join(program).encode(), capture_output=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    # Length-prefixed fields: messages may hold newlines and any other byte.
    out, fields = result.stdout, []
    while out:
        size, _, out = out.partition(b" ")
        fields.append(out[: int(size)].decode())
        out = out[int(size) :]
    return [
        Health(status, message) for status, message in zip(fields[::2], fields[1::2], strict=True)
    ]


def assess(kind: str, obj: dict[str, Any], lua: str) -> Health:
    return assess_all(kind, [obj], lua)[0]


# --- recorded statuses ------------------------------------------------------------------------

# Argo CD's own verdict on an object being deleted, given before any health script runs
# (gitops-engine's GetResourceHealth).
PENDING_DELETION = Health("Progressing", "Pending deletion")
REASON = re.compile(r"[A-Z][A-Za-z0-9]*")
# Stalls whose fix lies outside the object: a child pod that cannot start or keep running
# (Kubernetes' own reasons for that, and the operator's for a server that never turns ready).
# Someone creates the missing Secret, makes the image available or frees a node, and the same
# generation then turns Healthy: Degraded was right all along. Every other Degraded that heals
# without a spec change was progress reported as a failure.
FIXED_OUTSIDE = frozenset(
    {
        "CreateContainerConfigError",
        "CreateContainerError",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "RunContainerError",
        "Unschedulable",
        "OOMKilled",
        "CrashLoopBackOff",
        "ReadinessNeverReached",
        "FailedCreate",
    }
)


def argocd_object(recorded: Recorded, step: Step) -> dict[str, Any]:
    """The live object as far as a health script reads it."""
    obj: dict[str, Any] = {
        "apiVersion": "modelyard.dev/v1alpha1",
        "kind": recorded.kind,
        "metadata": {
            "name": recorded.name,
            "namespace": recorded.namespace,
            "generation": step.generation,
        },
    }
    if step.status is not None:
        obj["status"] = step.status
    return obj


def health_sequence(recorded: Recorded, lua: str) -> list[Health]:
    """What Argo CD shows at each recorded step."""
    live = [step for step in recorded.steps if not step.deleting]
    healths = iter(assess_all(recorded.kind, [argocd_object(recorded, s) for s in live], lua))
    return [PENDING_DELETION if step.deleting else next(healths) for step in recorded.steps]


def _failing_condition(status: dict[str, Any]) -> dict[str, Any] | None:
    """The condition a Degraded verdict rests on: Stalled=True, else Ready=False."""
    conditions: dict[str, dict[str, Any]] = {
        c.get("type", ""): c for c in status.get("conditions") or []
    }
    for type_, value in (("Stalled", "True"), ("Ready", "False")):
        condition = conditions.get(type_)
        if condition is not None and condition.get("status") == value:
            return condition
    return None


def problems(recorded: Recorded, healths: list[Health]) -> list[str]:
    """What is wrong with what Argo CD would have shown of one recorded object:

    - a Degraded that later turns Healthy within the same generation: the operator called
      progress a failure (after a spec change, a Degraded before it was a real one, fixed;
      so is one whose reason is in FIXED_OUTSIDE);
    - a Degraded without the operator's reason (a stable CamelCase word) leading its message.
    """
    found = []
    where = f"{recorded.kind} {recorded.namespace}/{recorded.name}"
    healed_generations: set[int] = set()
    for index, (step, health) in enumerate(zip(recorded.steps, healths, strict=True)):
        if health.status != "Degraded":
            continue
        failing = _failing_condition(step.status or {})
        reason = (failing or {}).get("reason") or ""
        if not REASON.fullmatch(reason) or not health.message.startswith(reason):
            found.append(f"{where} step {index}: Degraded without a reason: {health.message!r}")
        later = zip(recorded.steps[index + 1 :], healths[index + 1 :], strict=True)
        healed = next(
            (s for s, h in later if s.generation == step.generation and h.status == "Healthy"),
            None,
        )
        if (
            healed is not None
            and reason not in FIXED_OUTSIDE
            and step.generation not in healed_generations
        ):
            healed_generations.add(step.generation)
            found.append(
                f"{where} step {index}: Degraded ({health.message}) on its way to Healthy "
                f"at generation {step.generation}"
            )
    return found


# Phases that say the operator is still working on the object.
WORKING = frozenset({"Ingesting", "Running", "Progressing"})


def condition_problems(recorded: Recorded) -> list[str]:
    """Where the operator's status breaks what the health checks rely on: observedGeneration on
    the status and on every condition, a CamelCase reason on every condition, and work under
    way (a working phase) shown as Reconciling, or as Stalled when it is stuck."""
    found = []
    where = f"{recorded.kind} {recorded.namespace}/{recorded.name}"
    for index, step in enumerate(recorded.steps):
        if step.status is None:
            continue
        if not isinstance(step.status.get("observedGeneration"), int):
            found.append(f"{where} step {index}: status without observedGeneration")
        conditions = {c.get("type"): c.get("status") for c in step.status.get("conditions") or []}
        if step.status.get("phase") in WORKING and "True" not in (
            conditions.get("Reconciling"),
            conditions.get("Stalled"),
        ):
            # A phase that says work is under way must not read as done (Healthy) meanwhile.
            found.append(f"{where} step {index}: {step.status['phase']} without Reconciling")
        for condition in step.status.get("conditions") or []:
            name = f"{where} step {index}: condition {condition.get('type')}"
            if not isinstance(condition.get("observedGeneration"), int):
                found.append(f"{name} without observedGeneration")
            if not REASON.fullmatch(condition.get("reason") or ""):
                found.append(f"{name} has reason {condition.get('reason')!r}")
    return found


def transitions(healths: list[Health]) -> list[str]:
    """The health statuses in order, each repeat of the previous one left out."""
    return [h.status for i, h in enumerate(healths) if i == 0 or healths[i - 1].status != h.status]


if __name__ == "__main__":
    PATCH.write_text(render_cm_patch())
    print(f"wrote {PATCH.relative_to(REPO)}")

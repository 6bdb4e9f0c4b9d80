"""Renders docs/api.md, the field reference, from the same structural schemas as the CRDs."""

from __future__ import annotations

import json
from collections.abc import Iterator

from modelyard.api import KINDS, ResourceBase
from modelyard.crds import Schema, model_schema


def _type_of(node: Schema) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "int or string"
    kind = str(node.get("type", "any"))
    if kind == "array":
        return f"[]{_type_of(node.get('items', {}))}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map[string]{_type_of(node['additionalProperties'])}"
    if node.get("enum"):
        return " \\| ".join(f"`{value}`" for value in node["enum"])
    return kind


def _is_transition(rule: Schema) -> bool:
    """A rule on updates: it compares with the stored object."""
    return "oldSelf" in rule["rule"]


def _rows(
    node: Schema, path: str, required: bool, immutable: tuple[str, ...] = ()
) -> Iterator[tuple[str, str, str, str]]:
    rules = node.get("x-kubernetes-validations", [])
    if path:
        notes = [node.get("description", "")]
        if "default" in node:
            notes.append(f"Default: `{json.dumps(node['default'])}`.")
        if "minimum" in node or "maximum" in node:
            low = node.get("minimum", "")
            high = node.get("maximum", "")
            notes.append(f"Range: {low}…{high}.")
        for rule in rules:
            if not _is_transition(rule):
                notes.append(f"Rule: {rule['message']}.")
            elif "fieldPath" not in rule:
                notes.append(f"**Immutable**: {rule['message']}.")
        notes += [f"**Immutable**: {message}." for message in immutable]
        yield path, _type_of(node), "yes" if required else "", " ".join(n for n in notes if n)
    child = node.get("items", node) if node.get("type") == "array" else node
    needed = set(child.get("required", []))
    for name, sub in child.get("properties", {}).items():
        suffix = "[]" if node.get("type") == "array" else ""
        frozen = tuple(
            rule["message"]
            for rule in rules
            if _is_transition(rule) and rule.get("fieldPath") == f".{name}"
        )
        yield from _rows(sub, f"{path}{suffix}.{name}" if path else name, name in needed, frozen)


def _kind_section(model: type[ResourceBase]) -> str:
    info = model.info
    lines = [
        f"## {info.kind}",
        "",
        f"{info.description} Short name `{', '.join(info.short_names)}`.",
        "",
    ]
    for part in ("spec", "status"):
        lines += [f"### {info.kind} {part}", "", "| field | type | required | description |"]
        lines.append("| --- | --- | --- | --- |")
        for path, kind, required, text in _rows(model_schema(model, part), "", False):
            lines.append(f"| `{part}.{path}` | {kind} | {required} | {text} |")
        lines.append("")
    return "\n".join(lines)


def render_reference() -> str:
    header = (
        "# API reference: modelyard.dev/v1alpha1\n\n"
        "Generated from `operator/modelyard/api/` by `make crds`; do not edit by hand. "
        "`kubectl explain <kind>.spec` prints the same descriptions.\n\n"
        "Fields marked **Immutable** keep the value they were created with: the API server "
        "refuses an update that changes them, naming the field. Everything else may change, "
        "and the operator acts on the change.\n"
    )
    return "\n".join([header, *(_kind_section(model) for model in KINDS)])

"""Renders the CustomResourceDefinitions from the pydantic models in `api/`.

Pydantic emits JSON Schema 2020-12; the API server wants a *structural* OpenAPI v3 schema. The
conversion inlines `$ref`s, turns `anyOf: [X, null]` into a plain optional X, maps free-form maps to
`x-kubernetes-preserve-unknown-fields`, `int | str` to `x-kubernetes-int-or-string`, and numeric
exclusive bounds to OpenAPI v3.0's boolean form. Anything it cannot express is an error, so a
model that the API server would misread never reaches `crds/`.

Optional fields are *not* marked `nullable`: the API server then prunes an explicit `null`, so
`has(field)` in CEL rules and "absent" in pydantic mean the same thing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from modelyard.api import CATEGORY, GROUP, KINDS, VERSION, ResourceBase

Schema = dict[str, Any]

# JSON Schema keywords that structural schemas accept, copied as they are.
_PASSTHROUGH = {
    "type",
    "description",
    "format",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minimum",
    "maximum",
    "required",
    "x-kubernetes-validations",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
}
# Pydantic-only keywords with no meaning to the API server.
_DROPPED = {"title", "$defs"}


class SchemaError(ValueError):
    """A model uses a construct that has no structural-schema equivalent."""


def to_structural(node: Schema, defs: dict[str, Schema], path: str = "") -> Schema:
    """Convert one pydantic JSON Schema node (and everything below it) to structural form."""
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        return to_structural({**target, **siblings}, defs, path)
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        return _any_of(node, defs, path)

    out: Schema = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "properties":
            out["properties"] = {
                name: to_structural(child, defs, f"{path}.{name}") for name, child in value.items()
            }
        elif key == "items":
            out["items"] = to_structural(value, defs, f"{path}[]")
        elif key == "additionalProperties":
            _additional_properties(out, value, defs, path)
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "const":
            out["enum"] = [value]
        elif key == "default":
            if value is not None:
                out["default"] = value
        elif key == "anyOf":
            out["anyOf"] = [{"type": option["type"]} for option in value]
        elif key in _PASSTHROUGH:
            out[key] = value
        else:
            raise SchemaError(f"{path or '<root>'}: keyword {key!r} has no structural equivalent")
    out = _ordered(out)
    if "type" not in out and not (
        out.get("x-kubernetes-int-or-string") or out.get("x-kubernetes-preserve-unknown-fields")
    ):
        raise SchemaError(f"{path or '<root>'}: every node needs a type")
    return out


def _ordered(node: Schema) -> Schema:
    """Description and type first, the rest as pydantic gave it: easier to read in review."""
    head: Schema = {key: node[key] for key in ("description", "type") if key in node}
    return {**head, **{key: value for key, value in node.items() if key not in head}}


def _any_of(node: Schema, defs: dict[str, Schema], path: str) -> Schema:
    options = node["anyOf"]
    non_null = [option for option in options if option.get("type") != "null"]
    siblings = {key: value for key, value in node.items() if key != "anyOf"}
    if len(non_null) == 1:
        return to_structural({**_resolve(non_null[0], defs), **siblings}, defs, path)
    types = sorted(option.get("type", "") for option in non_null)
    if types == ["integer", "string"]:
        string_option = next(option for option in non_null if option["type"] == "string")
        constraints = {k: v for k, v in string_option.items() if k in ("pattern", "maxLength")}
        return to_structural(
            {
                **siblings,
                **constraints,
                "anyOf": [{"type": "integer"}, {"type": "string"}],
                "x-kubernetes-int-or-string": True,
            },
            defs,
            path,
        )
    raise SchemaError(f"{path or '<root>'}: a union of {types} has no structural equivalent")


def _resolve(node: Schema, defs: dict[str, Schema]) -> Schema:
    if "$ref" in node:
        return {
            **defs[node["$ref"].rsplit("/", 1)[-1]],
            **{k: v for k, v in node.items() if k != "$ref"},
        }
    return node


def _additional_properties(out: Schema, value: Any, defs: dict[str, Schema], path: str) -> None:
    if value is False:
        return  # extra="forbid": the API server prunes unknown fields instead
    if value is True or value == {}:
        out["x-kubernetes-preserve-unknown-fields"] = True
        return
    out["additionalProperties"] = to_structural(value, defs, f"{path}.*")


def model_schema(model: type[ResourceBase], field: str) -> Schema:
    """The structural schema of one top-level field (spec or status) of a kind."""
    annotation = model.model_fields[field].annotation
    schema_model: type[BaseModel] = next(
        arg
        for arg in getattr(annotation, "__args__", (annotation,))
        if isinstance(arg, type) and issubclass(arg, BaseModel)
    )
    raw = schema_model.model_json_schema(by_alias=True, mode="validation")
    return to_structural(raw, raw.get("$defs", {}), f".{field}")


def render_crd(model: type[ResourceBase]) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    info = model.info
    open_api: Schema = {
        "description": info.description,
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": model_schema(model, "spec"),
            "status": model_schema(model, "status"),
        },
    }
    if model.rules:
        # Rules on the object's own name: the one part of metadata a CRD's CEL may read.
        open_api["x-kubernetes-validations"] = [rule.to_validation() for rule in model.rules]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{info.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "modelyard"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [column.to_dict() for column in info.columns],
                    "schema": {"openAPIV3Schema": open_api},
                }
            ],
        },
    }


def crd_filename(model: type[ResourceBase]) -> str:
    return f"{GROUP}_{model.info.plural}.yaml"


class _NoAliasDumper(yaml.SafeDumper):
    """Writes shared sub-schemas out in full: anchors and aliases confuse readers of CRDs."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(document: dict[str, Any]) -> str:
    return yaml.dump(
        document, Dumper=_NoAliasDumper, sort_keys=False, width=100, allow_unicode=True
    )


def render_all() -> dict[str, str]:
    """File name → YAML text for every kind, exactly as checked in under `crds/`."""
    return {crd_filename(model): dump_yaml(render_crd(model)) for model in KINDS}


def write_all(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written

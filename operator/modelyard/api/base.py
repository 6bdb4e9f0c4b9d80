"""The base every API model derives from: camelCase wire names, strict fields, shared rules.

A validation rule is declared once, as a `Rule`, and serves twice: the CRD generator emits it as
a CEL `x-kubernetes-validations` entry, and pydantic runs its Python twin so that the CLI, the
operator and the tests reject the same objects the API server rejects, with the same message.

A `Transition` is a rule on updates (immutable fields): it compares the new object with
`oldSelf`, which only the API server has, so it exists in CEL alone and pydantic never runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler, model_validator
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError


def _validation(cel: str, message: str, field_path: str | None) -> dict[str, str]:
    """One `x-kubernetes-validations` entry; the API server reports it at `fieldPath`. It cannot
    point into metadata (the schema does not declare it), so such rules name it in the message."""
    if field_path and field_path.startswith(".metadata."):
        return {"rule": cel, "message": f"{field_path[1:]}: {message}"}
    entry = {"rule": cel, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


@dataclass(frozen=True)
class Rule:
    """A cross-field rule: CEL for the API server, `check` for Python."""

    cel: str
    message: str
    check: Callable[[Any], bool]
    field_path: str | None = None

    def to_validation(self) -> dict[str, str]:
        return _validation(self.cel, self.message, self.field_path)


@dataclass(frozen=True)
class Transition:
    """A rule on updates, in CEL over `self` and `oldSelf`; the API server alone enforces it.

    The API server evaluates it only when the object it sits on exists before and after the
    update, so it belongs on an object that is always there (spec or a required part of it).
    """

    cel: str
    message: str
    field_path: str | None = None

    def to_validation(self) -> dict[str, str]:
        return _validation(self.cel, self.message, self.field_path)


def _value_or_empty(obj: str, path: str) -> str:
    """CEL for `obj.path` where every step may be absent: the value, or '' when any is missing."""
    steps = path.split(".")
    present = " && ".join(f"has({obj}.{'.'.join(steps[: i + 1])})" for i in range(len(steps)))
    return f"({present} ? {obj}.{path} : '')"


def immutable(*paths: str, message: str, field_path: str | None = None) -> Transition:
    """Once created, the optional string fields at `paths` (dotted wire names below the model)
    may not be set, changed or removed. `field_path` is where the API server reports it."""
    same = " && ".join(
        f"{_value_or_empty('self', p)} == {_value_or_empty('oldSelf', p)}" for p in paths
    )
    return Transition(cel=same, message=message, field_path=field_path or f".{paths[0]}")


class ApiModel(BaseModel):
    """Wire format: camelCase names, unknown fields rejected, None means absent."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
    )

    rules: ClassVar[tuple[Rule | Transition, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        for rule in self.rules:
            if isinstance(rule, Rule) and not rule.check(self):
                # The API server reports a rule at its fieldPath; keep it so errors agree.
                raise PydanticCustomError(
                    "rule", rule.message, {"field_path": (rule.field_path or "").lstrip(".")}
                )
        return self

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(core_schema)
        if cls.rules:
            target = handler.resolve_ref_schema(json_schema)
            target["x-kubernetes-validations"] = [rule.to_validation() for rule in cls.rules]
        return json_schema

    def to_dict(self) -> dict[str, Any]:
        """The object as Kubernetes stores it: camelCase keys, absent fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def count_set(*values: object) -> int:
    """How many of the given optional fields are set (for exactly-one-of rules)."""
    return sum(value is not None for value in values)

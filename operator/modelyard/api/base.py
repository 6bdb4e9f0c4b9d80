"""The base every API model derives from: camelCase wire names, strict fields, shared rules.

A validation rule is declared once, as a `Rule`, and serves twice: the CRD generator emits it as
a CEL `x-kubernetes-validations` entry, and pydantic runs its Python twin so that the CLI, the
operator and the tests reject the same objects the API server rejects, with the same message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler, model_validator
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError


@dataclass(frozen=True)
class Rule:
    """A cross-field rule: CEL for the API server, `check` for Python.

    `check` is None for transition rules (they compare with `oldSelf`, which only the API server
    has); those are enforced at admission only.
    """

    cel: str
    message: str
    check: Callable[[Any], bool] | None
    field_path: str | None = None


class ApiModel(BaseModel):
    """Wire format: camelCase names, unknown fields rejected, None means absent."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
    )

    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        for rule in self.rules:
            if rule.check is not None and not rule.check(self):
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
            validations = []
            for rule in cls.rules:
                entry = {"rule": rule.cel, "message": rule.message}
                if rule.field_path:
                    entry["fieldPath"] = rule.field_path
                validations.append(entry)
            target["x-kubernetes-validations"] = validations
        return json_schema

    def to_dict(self) -> dict[str, Any]:
        """The object as Kubernetes stores it: camelCase keys, absent fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def count_set(*values: object) -> int:
    """How many of the given optional fields are set (for exactly-one-of rules)."""
    return sum(value is not None for value in values)

"""Types shared by the three kinds: conditions, object metadata, storage, resources, CRD facts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

from modelyard.api.base import ApiModel, Rule

GROUP = "modelyard.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "modelyard"

# A DNS-1123 subdomain: what Kubernetes accepts as an object name.
ObjectName = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    ),
]

# The same grammar as resource.Quantity ("500m", "2Gi", 1).
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def _check_quantity(value: int | str) -> int | str:
    if isinstance(value, str) and not re.fullmatch(QUANTITY_PATTERN, value):
        raise ValueError(f"{value!r} is not a quantity such as 500m, 2, 1.5 or 512Mi")
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]

Digest = Annotated[str, StringConstraints(pattern=r"^sha256:[a-f0-9]{64}$", max_length=71)]
# The label values a name becomes on children are at most this long.
ColumnName = Annotated[str, StringConstraints(min_length=1, max_length=256)]
LABEL_VALUE_MAX = 63
S3Uri = Annotated[
    str,
    StringConstraints(pattern=r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$", max_length=2048),
]
Image = Annotated[str, StringConstraints(min_length=1, max_length=512)]
MetricName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=63)]

ConditionStatus = Literal["True", "False", "Unknown"]


class ObjectMeta(BaseModel):
    """The part of metadata that manifests carry; the rest is the API server's."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class Condition(ApiModel):
    """One aspect of the object's state, in the metav1.Condition form that tools understand."""

    type: str = Field(max_length=316, description="Which aspect this is, e.g. Ready.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="A stable CamelCase word that programs can match on.",
    )
    message: str = Field(default="", max_length=32768, description="What a human should know.")
    last_transition_time: datetime = Field(description="When status last changed.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation this condition was computed for."
    )


Conditions = Annotated[
    list[Condition],
    Field(
        max_length=32,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    ),
]


class SecretReference(ApiModel):
    """A Secret in the same namespace, by name. Secrets are only ever referenced, never copied."""

    name: ObjectName = Field(description="Name of the Secret.")


class StorageSpec(ApiModel):
    """Where artifacts live. Fields left out fall back to the operator's defaults (Helm values)."""

    endpoint: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://",
        description="URL of the S3-compatible endpoint, e.g. http://minio.storage:9000.",
    )
    bucket: str | None = Field(
        default=None,
        max_length=63,
        pattern=r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$",
        description="Bucket that holds datasets and models.",
    )
    prefix: str | None = Field(
        default=None,
        max_length=512,
        pattern=r"^[^/].*$",
        description="Key prefix inside the bucket, without a leading slash.",
    )
    region: str | None = Field(default=None, max_length=64, description="Region name.")
    credentials_secret_ref: SecretReference | None = Field(
        default=None,
        description=(
            "Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY keys, mounted into the "
            "workload as environment variables."
        ),
    )


class ResourceRequirements(ApiModel):
    """CPU and memory for the workload's container, as in a Pod spec."""

    requests: dict[str, Quantity] | None = Field(
        default=None, description="Minimum resources, e.g. {cpu: 500m, memory: 512Mi}."
    )
    limits: dict[str, Quantity] | None = Field(
        default=None, description="Maximum resources, e.g. {memory: 1Gi}."
    )


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0

    def to_dict(self) -> dict[str, Any]:
        column: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.description:
            column["description"] = self.description
        if self.priority:
            column["priority"] = self.priority
        return column


READY_COLUMN = PrinterColumn(
    "Ready", '.status.conditions[?(@.type=="Ready")].status', description="Ready condition"
)
PHASE_COLUMN = PrinterColumn("Phase", ".status.phase", description="One-word summary")
AGE_COLUMN = PrinterColumn("Age", ".metadata.creationTimestamp", type="date")


@dataclass(frozen=True)
class KindInfo:
    """What the CRD says about a kind beyond its schema."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    columns: tuple[PrinterColumn, ...] = field(default=())
    description: str = ""


class StatusBase(ApiModel):
    """What every kind's status carries; each kind adds its phase and its results."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation the operator last acted on."
    )
    conditions: Conditions | None = Field(
        default=None, description="Current state in metav1.Condition form; always includes Ready."
    )


def name_at_most(limit: int, why: str) -> Rule:
    """A rule on the object's own name (the only part of metadata CEL may read)."""
    return Rule(
        cel=f"size(self.metadata.name) <= {limit}",
        message=f"must be at most {limit} characters: {why}",
        check=lambda resource: len(resource.metadata.name or "") <= limit,
        field_path=".metadata.name",
    )


class ResourceBase(ApiModel):
    """A whole object as kubectl applies it; each kind narrows `kind`, `spec` and `status`."""

    info: ClassVar[KindInfo]

    api_version: Literal["modelyard.dev/v1alpha1"] = Field(
        default="modelyard.dev/v1alpha1", alias="apiVersion"
    )
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

"""What every handler needs: the API access and the operator's configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import kopf

from modelyard.config import OperatorConfig
from modelyard.controllers.kube import Kube


@dataclass(frozen=True)
class Context:
    kube: Kube
    config: OperatorConfig


def from_memo(memo: kopf.Memo) -> Context:
    context: Context = memo["context"]
    return context


def post_event(body: dict[str, Any], reason: str, message: str, warning: bool = False) -> None:
    """A Kubernetes Event on the object, for transitions a user wants to see."""
    # kopf only reads apiVersion, kind and metadata: a plain dict from the API serves as well.
    target: Any = body
    if warning:
        kopf.warn(target, reason=reason, message=message)
    else:
        kopf.info(target, reason=reason, message=message)
